"""``qf parity EXP.yaml`` or ``qf parity RUN_FOLDER``: run an experiment in both engines and show whether
they agree.

A run folder stands for the exact configuration of that run (its ``config.yaml``, e.g. a sweep's best
combination), with relative references resolved against the experiment file it came from.

Exit codes: 0 when final equity, orders and risk events agree within the tolerance, 1 when they do not,
2 for a user error (bad experiment, data, plugin), printed one line per problem.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from qf.errors import QfError

out = Console()
err = Console(stderr=True)


def _fail(exc: QfError) -> None:
    for line in exc.problems:
        err.print(f"[bold red]error:[/] {line}", highlight=False, soft_wrap=True)
    raise typer.Exit(exc.exit_code)


def _num(v: float) -> str:
    return f"{v:,.4f}"


def render(report, title: str) -> Table:
    """The comparison as a rich table: one column per engine, the relative difference, a verdict.

    Example::

        Console().print(render(compare(a, b), "sma_cross"))
    """
    ok = "[green]ok[/]"
    tol = report.tolerance
    t = Table(title=title)
    t.add_column("")
    t.add_column(report.engine_a, justify="right")
    t.add_column(report.engine_b, justify="right")
    t.add_column("rel. diff", justify="right")
    t.add_column("verdict")
    t.add_row("final equity", _num(report.final_a), _num(report.final_b), f"{report.final_rel_diff:.1e}",
              ok if report.final_rel_diff <= tol else "[bold red]differs[/]")
    first = report.first_divergence
    t.add_row("equity path", "", "", f"{report.max_rel_diff:.1e}",
              ok if first is None else f"[yellow]from {first:%Y-%m-%d}[/]")
    unmatched = len(report.unmatched_a) + len(report.unmatched_b)
    t.add_row("orders", str(report.orders_a), str(report.orders_b), f"{report.max_order_diff:.1e}",
              f"[green]ok[/] ({report.matched} matched)" if report.orders_equal
              else f"[bold red]{unmatched} unmatched[/]")
    t.add_row("fees paid", _num(report.fees_a), _num(report.fees_b), "", "")
    t.add_row("risk events", str(report.events_a), str(report.events_b), "",
              ok if report.events_equal else "[bold red]differ[/]")
    return t


def _unmatched(report) -> Table:
    t = Table(title="unmatched orders (first 10 of each engine)")
    for c in ("engine", "time", "symbol", "side", "quantity", "price"):
        t.add_column(c)
    for name, df in ((report.engine_a, report.unmatched_a), (report.engine_b, report.unmatched_b)):
        for r in df.head(10).itertuples(index=False):
            t.add_row(name, f"{r.time:%Y-%m-%d}", str(r.symbol), str(r.side), f"{r.quantity:.12g}", f"{r.price:.6f}")
    return t


def _redacted(node: Any, path: tuple = ()) -> tuple | None:
    from qf.config.loader import REDACTED  # lazy: pandas

    if isinstance(node, dict):
        items = node.items()
    elif isinstance(node, list):
        items = enumerate(node)
    else:
        return path if node == REDACTED else None
    for k, v in items:
        found = _redacted(v, (*path, k))
        if found is not None:
            return found
    return None


def load_run_config(folder: Path, overrides: list[str]):
    """The experiment a run folder was made from: its ``config.yaml`` (overrides, sweep combination and
    all), relative references resolved against the original experiment file's folder.

    Example::

        exp = load_run_config(Path("reports/sma_cross/20250101-120000-abc123"), [])
    """
    from qf.config.loader import apply_overrides, build, dotted, read_yaml  # lazy: pandas

    cfg = folder / "config.yaml"
    if not cfg.is_file():
        raise QfError(f"{folder}: not a run folder (no config.yaml)")
    manifest: Any = None
    with contextlib.suppress(OSError, ValueError):
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    origin = manifest.get("config_file") if isinstance(manifest, dict) else None
    raw, src = read_yaml(cfg.read_text(encoding="utf-8"), str(cfg))
    hidden = _redacted(raw)
    if hidden is not None:
        raise QfError(f"{cfg}: {dotted(hidden)} was redacted when the report was written; run qf parity on the "
                      f"experiment file{f' ({origin})' if origin else ''} with the same --set values instead")
    if overrides:
        raw = apply_overrides(raw, overrides, src)
    base = Path(origin) if origin and Path(origin).parent.is_dir() else cfg
    return build(raw, src, base)


def parity(
    experiment: Annotated[Path, typer.Argument(help="Experiment YAML file, or a run folder (its config.yaml).")],
    tolerance: Annotated[float, typer.Option(help="Largest relative difference accepted (equity, quantities).")]
    = 1e-9,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Override a value: dotted.path=value (repeatable).")
    ] = None,
) -> None:
    """Run the experiment in vectorbt and backtrader and compare equity, orders and risk events.

    Exits 1 when they differ by more than the tolerance, e.g.
    qf parity experiments/sma_cross.yaml --set execution.fees=0.001, or
    qf parity reports/sma_cross/<run-id> for the exact configuration of a run (a sweep's best combination)
    """
    from qf.config.loader import load_experiment  # lazy: pandas
    from qf.parity import run_parity  # lazy: numba

    try:
        if experiment.is_dir():
            exp = load_run_config(experiment, list(set_ or []))
        elif experiment.name == "config.yaml" and (experiment.parent / "manifest.json").is_file():
            exp = load_run_config(experiment.parent, list(set_ or []))
        else:
            exp = load_experiment(experiment, list(set_ or []))
        if exp.spec.sweep is not None or exp.spec.walk_forward is not None:
            err.print("note: parity runs the experiment's own parameters, not its sweep or walk-forward; "
                      "give a sweep's run folder, or --set the combination and --set sweep=null", highlight=False)
        report = run_parity(exp, tolerance, progress=lambda engine: err.status(f"{exp.name}: running {engine}"))
    except QfError as exc:
        _fail(exc)
        return
    out.print(render(report, f"{exp.name}: parity at tolerance {tolerance:g}"))
    if not report.orders_equal:
        out.print(_unmatched(report))
    if not report.ok:
        out.print("[bold red]the engines differ beyond the tolerance[/]")
        raise typer.Exit(1)
    out.print("[green]the engines agree[/]")
