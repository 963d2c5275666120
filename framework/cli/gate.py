"""``qf report gate REPORT``: the go/no-go gate of a paper report (see :mod:`qf.report.gate`).

Exit codes: 0 GO, 3 NO-GO, 2 for a bad gate file, report folder or experiment (one ``error:`` line).

Examples::

    qf report gate reports/hrp_swing/20240105-120000-ab12cd --gate gates.yaml
    qf report gate reports/hrp_swing/20240105-120000-ab12cd --backtest reports/hrp_swing/20240104-...
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from qf.cli.common import fail as _fail
from qf.cli.common import out
from qf.errors import QfError


def print_gate(result: Any) -> None:
    """GO / NO-GO and one line per criterion (value, threshold, pass/FAIL)."""
    colour = "green" if result.go else "red"
    out.print(f"[bold {colour}]{result.verdict}[/]")
    for c in result.criteria:
        out.print(f"  {escape(c.line())}", highlight=False, soft_wrap=True)


def gate_spec(gate_file: Path | None, fallback: Any) -> Any:
    """The gate of ``--gate`` (a file), else ``fallback`` (the experiment's ``gate:`` section, may be None)."""
    from qf.report.gate import load_gate  # lazy: pandas

    return load_gate(gate_file) if gate_file is not None else fallback


def report_gate(
    report: Annotated[Path, typer.Argument(help="A paper report folder.")],
    gate: Annotated[Path | None, typer.Option(
        "--gate", help="Gate file (criteria at the top level or under gate:); default: the report's config gate:.")]
    = None,
    backtest: Annotated[Path | None, typer.Option(
        "--backtest", help="A backtest report of the same experiment (else the backtest is run in memory from "
                           "the report's config.yaml when a criterion needs it).")] = None,
) -> None:
    """Evaluate a paper report against go/no-go thresholds: GO (exit 0) or NO-GO (exit 3), gate.html in the report."""
    from qf.report.gate import load_gate, needs_backtest, run_gate  # lazy: pandas

    try:
        if not (report / "metrics.json").is_file():
            raise QfError(f"{report}: not a run folder (no metrics.json)")
        loaded: list[Any] = []

        def experiment() -> Any:  # the report's own config, loaded only when something needs it
            from qf.config.loader import load_experiment  # lazy: pandas

            config = report / "config.yaml"
            if not config.is_file():
                raise QfError(f"{report}: no config.yaml to replay the backtest from; give --backtest REPORT")
            if not loaded:
                loaded.append(load_experiment(config))
            return loaded[0]

        if gate is None and not (report / "config.yaml").is_file():
            raise QfError(f"{report}: no config.yaml to take the gate from; give --gate FILE")
        spec = gate_spec(gate, None) if gate is not None else load_gate(report / "config.yaml", section=True)
        if spec is None:
            raise QfError(f"{report / 'config.yaml'}: the experiment has no gate: section; give --gate FILE")
        replay = experiment() if needs_backtest(spec) and backtest is None else None
        result = run_gate(report, spec, replay, backtest)
    except QfError as exc:
        _fail(exc)
        return
    print_gate(result)
    out.print(f"page: {report / 'gate.html'}", highlight=False, soft_wrap=True)
    raise typer.Exit(result.exit_code)


def check_gate_file(gate: Path | None) -> None:
    """Refuse a bad ``--gate`` file before a paper session starts (one ``error:`` line, exit 2)."""
    if gate is None:
        return
    try:
        gate_spec(gate, None)
    except QfError as exc:
        _fail(exc)


def gate_after_paper(experiment: Path, overrides: list[str] | None, gate: Path | None,
                     report_dir: Path | None) -> int | None:
    """``qf paper --gate`` (or the experiment's ``gate:``): evaluate the session's report, print the verdict
    and return its exit code (0 GO, 3 NO-GO); None when there is no gate or no report."""
    from qf.config.loader import load_experiment  # lazy: pandas
    from qf.report.gate import needs_backtest, run_gate  # lazy: pandas

    if report_dir is None:
        return None
    try:
        exp = load_experiment(experiment, list(overrides or []))
        spec = gate_spec(gate, exp.spec.gate)
        if spec is None:
            return None
        result = run_gate(report_dir, spec, exp if needs_backtest(spec) else None)
    except QfError as exc:
        _fail(exc)
        return None
    print_gate(result)
    out.print(f"gate: {report_dir / 'gate.html'}", highlight=False, soft_wrap=True)
    return result.exit_code
