"""The ``qf`` command line. Every user error prints one line per problem and exits with code 2."""

from __future__ import annotations

import contextlib
import errno
import json
import signal
import sys
from pathlib import Path
from typing import Annotated

import click
import typer
from rich.markup import escape
from rich.table import Table
from typer.core import TyperGroup

from qf.cli import help_style
from qf.cli.common import SUMMARY, err, fail, out, print_summary
from qf.cli.common import fmt_metric as _fmt_metric
from qf.cli.common import period as _period
from qf.errors import QfError
from qf.processes import exit_now

help_style.apply()


class QfGroup(TyperGroup):
    """qf's top-level command group: qf's own commands, then those plugins contribute (``qf_register_commands``).

    Plugin commands are added the first time a name is not one of qf's own or the commands are listed
    (``qf --help``, ``qf plugins``), so ``qf run`` or ``qf report list`` does not load every plugin. A plugin
    cannot replace a qf command; one whose registration fails is named in one ``warning:`` line, its commands
    are missing and everything else works (``qf plugins`` marks it broken).
    """

    _plugin_commands_added = False

    def add_plugin_commands(self) -> None:
        if self._plugin_commands_added:
            return
        self._plugin_commands_added = True
        from typer.main import get_command_from_info, get_group_from_info

        from qf.registry import get_registry  # lazy: pandas

        registry = get_registry(allow_broken=True)
        before = {name: list(b.problems) for name, b in registry.broken.items()}
        contributed = typer.Typer()
        registry.register_commands(contributed, taken=self.commands)
        for info in contributed.registered_commands:
            command = get_command_from_info(info, pretty_exceptions_short=True, rich_markup_mode=app.rich_markup_mode)
            self.add_command(command, command.name)
        for group_info in contributed.registered_groups:
            group = get_group_from_info(group_info, pretty_exceptions_short=True, suggest_commands=True,
                                        rich_markup_mode=app.rich_markup_mode)
            for name, command in ({group.name: group} if group.name else group.commands).items():
                self.add_command(command, name)
        for name, b in registry.broken.items():
            for problem in b.problems[len(before.get(name, [])):]:
                err.print(f"[bold yellow]warning:[/] {escape(problem)}; its commands are not available",
                          highlight=False, soft_wrap=True)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands:
            self.add_plugin_commands()
        return super().get_command(ctx, cmd_name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        self.add_plugin_commands()
        return super().list_commands(ctx)


app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, cls=QfGroup,
                  help="qf: plugin-based backtesting and paper trading.")
report_app = typer.Typer(no_args_is_help=True, help="Past runs: list them, compare them.")
data_app = typer.Typer(no_args_is_help=True, help="Inspect what a data source returns.")
app.add_typer(report_app, name="report")
app.add_typer(data_app, name="data")

SetOpt = Annotated[list[str] | None, typer.Option("--set", help="Override a value: dotted.path=value (repeatable).")]
MaxCombosOpt = Annotated[int | None, typer.Option(
    "--max-combos", min=1, help="Refuse a sweep of more combinations (before constraints) than this; default 100000.")]


def _version(value: bool) -> None:
    if value:
        from qf import __version__

        out.print(f"qf {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def _main(version: Annotated[bool, typer.Option(
        "--version", is_eager=True, callback=_version, help="Print qf's version and exit.")] = False) -> None:
    # no docstring: it would replace the app's help text
    return None


@app.command()
def run(
    experiment: Annotated[Path, typer.Argument(help="Experiment YAML file.")],
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Report folder (default reports/<name>/<run-id>).")
    ] = None,
    engine: Annotated[str | None, typer.Option(help="vectorbt or backtrader (overrides execution.engine).")] = None,
    set_: SetOpt = None,
    max_combos: MaxCombosOpt = None,
) -> None:
    """Run an experiment and write its report (a sweep when the file has a sweep: section)."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from qf.config.loader import load_experiment  # lazy: pydantic
    from qf.registry import get_registry  # lazy: pandas
    from qf.report.writer import check_report_target  # lazy: pandas

    try:
        overrides = list(set_ or [])
        if engine is not None:
            overrides.append(f"execution.engine={engine}")
        exp = load_experiment(experiment, overrides, max_combos=max_combos)
        # a report that cannot be written is refused now, not after minutes of simulation
        check_report_target(out_dir, Path(exp.spec.report.dir), exp.name)
        if exp.spec.sweep is not None or exp.spec.walk_forward is not None or exp.spec.validation is not None:
            from qf.research.study import run_research  # lazy: numba

            run_research(exp, out_dir, console=out)
            return
        from qf.runner import run_experiment  # lazy: numba

        with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=err,
                      transient=True) as progress:
            task = progress.add_task(f"{exp.name}: starting", total=None)
            outcome = run_experiment(
                exp, out_dir, step=lambda s: progress.update(task, description=f"{exp.name}: {s}"),
                registry=get_registry(),
            )
    except QfError as exc:
        fail(exc)
        return
    print_summary(f"{exp.name} ({exp.spec.execution.engine})", outcome.metrics)
    out.print(f"report: {outcome.report_dir}")


@app.command()
def validate(
    experiment: Annotated[Path, typer.Argument(help="Experiment YAML file.")],
    set_: SetOpt = None,
    max_combos: MaxCombosOpt = None,
    lookahead: Annotated[bool, typer.Option(
        "--lookahead", help="Also re-run the signal, sizer and stateless risk rules on truncated and trailing-window "
                            "data and fail (exit 1) on any look-ahead or broken warmup contract.")] = False,
) -> None:
    """Check an experiment without running it: schema, component names, every component's params, the sweep.

    What depends on the data's length (rebalance period, walk-forward windows) is checked too when the data
    is local (sample, csv, parquet); files of your own (csv, parquet) are always read and checked; other
    sources are checked when ``qf run`` loads them. ``--lookahead``
    loads the data and runs the look-ahead and warmup checks of :mod:`qf.lookahead` on it.
    """
    from qf.components import PathResolving  # lazy: pandas
    from qf.config.loader import load_experiment, needs_data  # lazy: pydantic

    try:
        exp = load_experiment(experiment, list(set_ or []), max_combos=max_combos)
        if lookahead:
            from qf.cli.lookahead import validate_lookahead  # lazy: numba

            validate_lookahead(exp, out, err)
            return
        if exp.data.loads_offline and (needs_data(exp) or isinstance(exp.data, PathResolving)):
            # the user's own files are read and checked (a missing or malformed file fails here, not in
            # `qf run`); shipped sample data is known good and loaded only when a length rule needs it
            exp.data.load()  # checked against the experiment on load
    except QfError as exc:
        fail(exc)
    out.print("ok")


@app.command()
def plugins() -> None:
    """List every installed component by kind, and the commands plugins add, with the plugin and its version."""
    from qf.registry import KIND_LABELS, command_names, get_registry, loaded  # lazy: pandas

    try:
        reg = get_registry(allow_broken=True)  # the healthy ones are listed, the broken ones marked
    except QfError as exc:
        fail(exc)
        return
    # a plugin whose commands fail to register is broken too; what they would add is only listed
    reg.register_commands(typer.Typer(), taken=command_names(app))
    table = Table(title="qf components")
    for col in ("kind", "name", "plugin", "version", "class"):
        table.add_column(col)
    for r in reg.all():
        table.add_row(KIND_LABELS[r.kind], r.name, r.provider, r.version, f"{r.cls.__module__}.{r.cls.__qualname__}")
    versions = loaded(reg.pm)
    for name, provider in reg.commands.items():
        if provider not in reg.broken:
            table.add_row("command", f"qf {name}", provider, versions.get(provider, "local"), "-")
    for b in reg.broken.values():
        table.add_row("[bold red]BROKEN[/]", "-", escape(b.name), escape(b.version), "not loaded: see below")
    out.print(table)
    for b in reg.broken.values():
        for problem in b.problems:
            err.print(f"[bold red]broken:[/] {escape(problem)}", highlight=False, soft_wrap=True)
    if reg.broken:
        err.print(f"other qf commands refuse to run until {len(reg.broken)} broken plugin(s) are fixed, uninstalled "
                  f"or skipped (QF_PLUGINS_BLOCK={','.join(reg.broken)})", highlight=False, soft_wrap=True)


@app.command()
def schema() -> None:
    """Print the JSON Schema of experiment files."""
    from qf.config.schema import Experiment  # lazy: pydantic

    out.print_json(json.dumps(Experiment.model_json_schema()))


@data_app.command("show")
def data_show(
    source: Annotated[str, typer.Option(help="Data source name, e.g. sample, csv, parquet, yfinance.")] = "sample",
    dataset: Annotated[str | None, typer.Option(help="Shortcut for --param dataset=NAME.")] = None,
    param: Annotated[list[str] | None, typer.Option("--param", help="Source parameter key=value (repeatable).")] = None,
) -> None:
    """Print what a data source returns: symbols, date range, rows, missing values."""
    from qf.config.loader import params_from_options  # lazy: pydantic
    from qf.registry import get_registry  # lazy: pandas

    try:
        reg = get_registry().get("data", source)
        items = [*(param or []), *([f"dataset={dataset}"] if dataset is not None else [])]
        comp = reg.cls(params_from_options(reg.cls.Params, items, "--param"))
        bars = comp.load()
    except QfError as exc:
        fail(exc)
        return
    close = bars.close
    table = Table(title=f"{bars.source}: {len(bars.symbols)} symbols, fields {', '.join(bars.fields)}")
    for col in ("symbol", "first", "last", "rows", "missing", "last close"):
        table.add_column(col)
    for s in bars.symbols:
        col = close[s]
        valid = col.dropna()
        table.add_row(s, str(valid.index[0].date()), str(valid.index[-1].date()), str(len(valid)),
                      str(int(col.isna().sum())), f"{valid.iloc[-1]:.4g}")
    out.print(table)
    out.print(f"{len(close)} bars from {close.index[0].date()} to {close.index[-1].date()}")


@report_app.command("list")
def report_list(root: Annotated[Path, typer.Option(help="Reports folder.")] = Path("reports")) -> None:
    """Past runs with their key metrics, newest first."""
    from qf.report.index import COLUMNS, fmt, scan  # lazy: pandas

    entries = scan(root)
    if not entries:
        out.print(f"no runs in {root}")
        return
    table = Table(title=f"runs in {root}")
    for col in ("created", "experiment", "run", "engine", "kind", *[label for _, label, _ in COLUMNS]):
        table.add_column(col)
    for e in entries:
        table.add_row(e.created, e.experiment, e.run_id, e.engine, e.kind,
                      *[fmt(e.metrics, k, p) for k, _, p in COLUMNS])
    out.print(table)


def _read_metrics(path: Path) -> dict:
    """A run's metrics.json, or a QfError naming the file (and line) when it is unreadable or not metrics."""
    try:
        metrics = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise QfError(f"{path}:{exc.lineno}: not valid JSON: {exc.msg} (column {exc.colno})") from None
    except UnicodeDecodeError:
        raise QfError(f"{path}: not UTF-8 text (a binary file?)") from None
    except OSError as exc:
        raise QfError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if not isinstance(metrics, dict):
        raise QfError(f"{path}: expected an object of metrics, got a JSON {type(metrics).__name__}")
    for key in SUMMARY:
        value = metrics.get(key)
        if not (value is None or isinstance(value, int | float | str)):
            raise QfError(f"{path}: {key} is not a number: {json.dumps(value)[:60]}")
    return metrics


@report_app.command("compare")
def report_compare(
    runs: Annotated[list[Path], typer.Argument(help="Two or more run folders.")],
    page: Annotated[Path | None, typer.Option(
        "--out", help="compare.html to write (default <reports root>/compare-<timestamp>.html).")] = None,
) -> None:
    """Put runs side by side (e.g. a backtest and a paper run): a terminal table and an HTML page."""
    from qf.report.compare import default_page, load_run, unique_labels, write_compare  # lazy: pandas
    from qf.report.writer import new_run_id  # lazy: pandas

    try:
        if len(runs) < 2:
            raise QfError(f"report compare needs two or more run folders, got {len(runs)}")
        loaded = []
        for r, label in zip(runs, unique_labels(runs), strict=True):
            m = r / "metrics.json"
            if not m.is_file():
                raise QfError(f"{r}: not a run folder (no metrics.json)")
            loaded.append(load_run(r, _read_metrics(m), label))
    except QfError as exc:
        fail(exc)
        return
    table = Table(title="comparison")
    table.add_column("metric")
    for r in loaded:
        table.add_column(r.label)
    keys = [k for k in SUMMARY if any(k in r.metrics for r in loaded)]
    rows = [("period", [_period(r.metrics) for r in loaded])]
    rows += [(k, [_fmt_metric(k, r.metrics[k]) if k in r.metrics else "" for r in loaded]) for k in keys]
    for k, vals in rows:  # the page adds kind, engine, broker, overrides and the config diff
        table.add_row(k, *vals)
    out.print(table)
    target = page if page is not None else default_page(loaded, new_run_id())
    try:
        written = write_compare(loaded, rows, target)
    except QfError as exc:
        fail(exc)
        return
    except OSError as exc:
        fail(QfError(f"{target}: cannot write the compare page: {exc.strerror or exc}"))
        return
    out.print(f"page: {written}", highlight=False, soft_wrap=True)


@report_app.command("open")
def report_open(run: Annotated[Path, typer.Argument(help="A run folder (or a page in one).")]) -> None:
    """Open a run's main page in a browser (sweep.html for a sweep, tearsheet.html otherwise)."""
    import webbrowser

    from qf.report.index import main_page  # lazy: pandas

    target = run if run.is_file() and run.suffix == ".html" else main_page(run) if run.is_dir() else None
    if target is None:
        fail(QfError(f"{run}: no page to open (not a run folder with sweep.html, cpcv.html or tearsheet.html)"
                     if run.exists() else f"{run}: no such file or folder"))
        return
    target = target.resolve()
    out.print(str(target), highlight=False, soft_wrap=True)  # always: the path works where no browser does
    try:
        opened = webbrowser.open(target.as_uri())
    except webbrowser.Error:
        opened = False
    if not opened:
        err.print("no browser available: open the path above", highlight=False)


def _register_commands() -> None:
    from qf.cli.new_plugin import new_plugin
    from qf.cli.paper import paper
    from qf.cli.parity import parity

    app.command("parity")(parity)
    app.command("paper")(paper)
    app.command("new-plugin")(new_plugin)
    app.command("watch")(__import__("qf.cli.watch", fromlist=["watch"]).watch)
    report_app.command("gate")(__import__("qf.cli.gate", fromlist=["report_gate"]).report_gate)


_register_commands()


# OSErrors that mean the disk, not the input, failed (reported in one line, exit code 1)
_STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO, errno.EFBIG}


class Terminated(BaseException):
    """SIGTERM (what ``kill``, systemd and docker send), raised in the main thread like Ctrl-C's
    KeyboardInterrupt so every cleanup runs: the report's temporary folder is removed, sweep workers stop, a
    sweep's finished rows stay checkpointed. A BaseException, so no ``except Exception`` swallows it."""


def _terminate(signum: int, frame: object) -> None:
    raise Terminated


def main() -> None:
    # not the main thread (qf embedded in an application): ValueError, and its handler is left alone;
    # qf paper installs its own for the session (see qf.cli.paper)
    with contextlib.suppress(ValueError):
        signal.signal(signal.SIGTERM, _terminate)
    try:
        app()
    except Terminated:
        err.print("terminated (SIGTERM): stopped; nothing half-written is left in the reports folder")
        sys.exit(143)
    except QfError as exc:  # raised outside a command's own handler
        for line in exc.problems:
            err.print(f"[bold red]error:[/] {escape(line)}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
    except OSError as exc:
        # the machine, not the input: a disk that filled up or went read-only mid-run is one line, exit 1
        if exc.errno not in _STORAGE_ERRNOS:
            raise
        where = f"{exc.filename}: " if exc.filename else ""
        err.print(f"[bold red]error:[/] {escape(where + (exc.strerror or str(exc)))}", highlight=False,
                  soft_wrap=True)
        sys.exit(1)


def entry() -> None:
    """The ``qf`` command (and ``python -m qf.cli.main``): :func:`main`, then the process ends as soon as its
    exit handlers have run (:func:`qf.processes.exit_now`). :func:`main` itself raises ``SystemExit`` as a
    command does, for callers that embed it."""
    try:
        main()
        code: int | str | None = 0
    except SystemExit as exc:
        code = exc.code
    exit_now(code)


if __name__ == "__main__":
    entry()
