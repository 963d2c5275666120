"""``qf watch``: one warm process that re-runs an experiment on every save and shows what changed.

The imports (vectorbt, numba kernels, quantstats) are paid once; each save of the experiment file, or of a
local component file it names (``type: strategies/x.py:Class``), re-runs it: the summary table, the metrics
that changed against the previous run, then the report and its tear sheet. A bad edit prints the same error
lines as ``qf validate`` and the watch goes on; the next good save runs again. Files are polled (mtime and
size, a few times a second): no dependency, and it works the same on every filesystem and editor (atomic
renames included).

Example::

    qf watch experiments/hrp_swing.yaml --no-tearsheet --set sizer.params.window=126
"""

from __future__ import annotations

import os
import re
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from qf.cli import common
from qf.cli.common import SUMMARY, fail, fmt_metric, print_summary
from qf.errors import QfError

SetOpt = Annotated[list[str] | None, typer.Option("--set", help="Override a value: dotted.path=value (repeatable).")]


# a local component in the YAML: "path/to/file.py:Class" (see qf.registry.load_local)
_LOCAL_TYPE = re.compile(r"([^\s'\"{}\[\],:#]+\.py):[A-Za-z_]\w*")

Snapshot = dict[Path, tuple[int, int] | None]


def local_component_files(text: str, experiment: Path) -> list[Path]:
    """The local ``file.py`` components an experiment's text names, resolved as :func:`qf.registry.load_local` does.

    Example::

        local_component_files("signal: {type: strategies/vt.py:VolTrend}", Path("experiments/x.yaml"))
        # [PosixPath('strategies/vt.py')] when run from the project folder
    """
    base = experiment.parent
    found: list[Path] = []
    for target in dict.fromkeys(_LOCAL_TYPE.findall(text)):
        candidates = [base / target, Path(target), base.parent / target]
        path = next((p for p in candidates if p.is_file()), candidates[0])
        found.append(path.resolve())
    return found


def _stat(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


def _forget_modules(files: set[Path]) -> None:
    """Drop the modules loaded from ``files`` so the next load executes the edited source."""
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None)
        if file and Path(file).resolve() in files:
            del sys.modules[name]


def _delta(key: str, before: float | int, after: float | int) -> str:
    d = after - before
    sign = "+" if d > 0 else ""
    if key in ("cagr", "total_return", "max_drawdown", "volatility"):
        return f"{sign}{d * 100:.2f} pp"
    return sign + fmt_metric(key, d)


def changed_metrics(before: dict, after: dict) -> list[tuple[str, str, str, str]]:
    """(metric, before, after, change) for every summary metric whose shown value changed.

    Example::

        changed_metrics({"sharpe": 1.0}, {"sharpe": 1.25})  # [("sharpe", "1.000", "1.250", "+0.250")]
    """
    rows = []
    for key in SUMMARY:
        a, b = before.get(key), after.get(key)
        fa, fb = fmt_metric(key, a), fmt_metric(key, b)
        if fa == fb:
            continue
        numeric = all(isinstance(v, int | float) and v == v for v in (a, b))
        rows.append((key, fa, fb, _delta(key, a, b) if numeric else ""))  # type: ignore[arg-type]
    return rows


@dataclass
class Watcher:
    """Watch ``experiment`` (and the local component files it names) and re-run it on every change.

    ``out_root`` is where report folders go (``<root>/<name>/<run-id>``, default the experiment's
    ``report.dir``); ``stop`` and ``max_runs`` end the loop (tests; Ctrl-C otherwise); ``after_run`` is called
    with the run number after each run, good or bad.

    Example::

        Watcher(Path("experiments/hrp_swing.yaml"), tearsheet=False).loop()
    """

    experiment: Path
    overrides: list[str] = field(default_factory=list)
    out_root: Path | None = None
    tearsheet: bool = True
    poll: float = 0.2
    out: Console = field(default_factory=lambda: common.out)
    err: Console = field(default_factory=lambda: common.err)
    max_runs: int | None = None
    stop: threading.Event = field(default_factory=threading.Event)
    after_run: Callable[[int], None] | None = None
    runs: int = 0
    previous: dict | None = None
    _files: set[Path] = field(default_factory=set)

    def _watched(self) -> set[Path]:
        files = {self.experiment.resolve()}
        try:
            text = self.experiment.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            text = ""
        # files seen before stay watched: a component that failed to import is still the one to fix
        self._files |= set(local_component_files(text, self.experiment))
        return files | self._files

    def snapshot(self) -> Snapshot:
        return {p: _stat(p) for p in self._watched()}

    def _settled(self) -> Snapshot:
        """A snapshot that held still for one poll (an editor may write a file in several steps)."""
        snap = self.snapshot()
        while not self.stop.wait(min(self.poll, 0.05)):
            again = self.snapshot()
            if again == snap:
                return snap
            snap = again
        return snap

    def loop(self) -> None:
        """Run now, then on every change, until ``stop`` is set, ``max_runs`` is reached, or Ctrl-C."""
        seen: Snapshot = {}
        while not self.stop.is_set():
            snap = self._settled()
            if self.stop.is_set():
                break
            if snap != seen:
                edited = {p: s for p, s in snap.items() if seen and seen.get(p) != s}
                seen = snap
                saved = max((s[0] for s in edited.values() if s is not None), default=None)
                self.run_once({p for p in edited if p.suffix == ".py"}, saved / 1e9 if saved else None)
                if self.max_runs is not None and self.runs >= self.max_runs:
                    break
                self.out.print(f"watching {self.experiment} for changes (Ctrl-C to stop)", style="dim",
                               highlight=False)
            self.stop.wait(self.poll)

    def _where(self, exc: BaseException) -> str:
        """``file:line`` of the innermost frame in a watched file (the component being edited), else the YAML."""
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if Path(f.filename).resolve() in self._files]
        return f"{frames[-1].filename}:{frames[-1].lineno}" if frames else str(self.experiment)

    def _error(self, lines: list[str]) -> None:
        # the same lines as `qf validate` (qf.cli.common.fail), without exiting
        for line in lines:
            self.err.print(f"[bold red]error:[/] {escape(line)}", highlight=False, soft_wrap=True)

    def run_once(self, changed_modules: set[Path] | None = None, saved_at: float | None = None) -> dict | None:
        """Load, run, print the summary and the changes, write the report; the metrics, or None on an error.

        ``saved_at`` (epoch seconds, the edited file's mtime) makes the summary say how long after the save
        it was printed.
        """
        from qf.config.loader import load_experiment  # lazy: pandas
        from qf.runner import lifecycle, run_experiment  # lazy: numba

        self.runs += 1
        t0 = time.perf_counter()
        if changed_modules:
            _forget_modules(changed_modules)
        try:
            overrides = [*self.overrides, *([] if self.tearsheet else ["report.tearsheet=false"])]
            exp = load_experiment(self.experiment, overrides)
            if exp.spec.sweep is not None or exp.spec.walk_forward is not None or exp.spec.validation is not None:
                raise QfError(f"{self.experiment}: qf watch runs single experiments; run sweeps and "
                              "walk-forward with qf run")
            with lifecycle(exp, "backtest") as run:  # the lifecycle hooks see each watched run
                run.outcome = outcome = run_experiment(exp, write=False)  # nested: fires nothing itself
                from qf.report.trades import run_trades  # lazy: pandas

                run_trades(outcome)  # the trade summary line, as qf run shows it
                run.metrics = metrics = outcome.metrics
                when = f"summary in {time.perf_counter() - t0:.2f} s"
                if saved_at is not None:  # the poll's delay included
                    when = f"summary {max(time.perf_counter() - t0, time.time() - saved_at):.2f} s after the save"
                self._print(exp, metrics, when)
                run.report_dir = self._write(exp, outcome, t0)
                run.ran = run.report_dir is not None  # after-run hooks get a written report, as with qf run
        except QfError as exc:
            self._error(exc.problems)
            self._done()
            return None
        except Exception as exc:  # noqa: BLE001 - a bug in a component being edited must not end the watch
            self._error([f"{self._where(exc)}: the run failed: {type(exc).__name__}: {exc}"])
            self._done()
            return None
        self.previous = metrics
        self._done()
        return metrics

    def _write(self, exp, outcome, t0: float) -> Path | None:
        """Write the run's report folder; a problem is said and the watch goes on (returns None)."""
        from qf.report import writer  # lazy: pandas
        from qf.runner import default_report_dir, write_report  # lazy: numba

        try:
            run_id = writer.new_run_id()
            root = self.out_root if self.out_root is not None else Path(exp.spec.report.dir)
            out = root / exp.name / run_id if self.out_root is not None else default_report_dir(exp, run_id)
            outcome.report_dir = write_report(exp, outcome, out, run_id, exp.spec.execution.engine)
        except QfError as exc:
            self._error(exc.problems)
            return None
        except OSError as exc:  # e.g. an unwritable or full --out: said, and the watch goes on
            self._error([f"{exc.filename or self.out_root}: cannot write the report: {exc.strerror or exc}"])
            return None
        self.out.print(f"report: {outcome.report_dir} ({time.perf_counter() - t0:.2f} s)", highlight=False)
        return outcome.report_dir

    def _print(self, exp, metrics: dict, when: str) -> None:
        title = f"{exp.name} ({exp.spec.execution.engine}), run {self.runs}"
        print_summary(title, metrics, self.out)
        if self.previous is None:
            self.out.print(when, highlight=False)
            return
        rows = changed_metrics(self.previous, metrics)
        if not rows:
            self.out.print(f"{when}; no metric changed since the previous run", highlight=False)
            return
        table = Table(title="changed since the previous run")
        for col in ("metric", "before", "after", "change"):
            table.add_column(col)
        for row in rows:
            table.add_row(*row)
        self.out.print(table)
        self.out.print(when, highlight=False)

    def _done(self) -> None:
        if self.after_run is not None:
            self.after_run(self.runs)


def watch(
    experiment: Annotated[Path, typer.Argument(help="Experiment YAML file.")],
    out_dir: Annotated[Path | None, typer.Option(
        "--out", help="Reports root: each run goes to <root>/<name>/<run-id> (default: the file's report.dir).")
    ] = None,
    no_tearsheet: Annotated[bool, typer.Option(
        "--no-tearsheet", help="Write the report without the tear sheet (faster).")] = False,
    set_: SetOpt = None,
) -> None:
    """Re-run an experiment on every save of its file (or of a local strategies/*.py it uses), in one warm process.

    Prints the summary table and the metrics that changed against the previous run, then writes the report.
    A bad edit prints the error and the watch goes on. Ctrl-C stops it.
    """
    if not experiment.is_file():
        fail(QfError(f"{experiment}: no such file"))
    watcher = Watcher(experiment, list(set_ or []), out_dir, tearsheet=not no_tearsheet)
    try:
        watcher.loop()
    except KeyboardInterrupt:
        common.err.print("stopped", highlight=False)
