"""``qf paper EXP.yaml``: paper-trade an experiment, simulated offline or through Alpaca, restart-safe.

Exit codes: 0 when the session ended (the replay's end, ``--max-bars``, ``--flatten``), 130 after Ctrl-C and
143 after SIGTERM (what systemd and docker send; both stop cleanly and write the report, and the state is kept:
run the same command to resume), 2 for a user error printed one line per problem.

Examples::

    qf paper experiments/hrp_swing.yaml --broker sim --speed 20        # offline, 20 bars a second
    qf paper experiments/hrp_swing_alpaca.yaml                          # ALPACA_API_KEY/SECRET in the env
    qf paper experiments/hrp_swing_alpaca.yaml --flatten                # close everything and exit
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from qf.cli.common import err, out, print_summary
from qf.cli.common import fail as _fail
from qf.cli.gate import check_gate_file, gate_after_paper
from qf.errors import QfError


@contextmanager
def _sigterm_as_interrupt() -> Iterator[list[int]]:
    """Turn the first SIGTERM into a KeyboardInterrupt in the main thread, so it stops like Ctrl-C.

    Yields the list of signals received (empty unless SIGTERM came). Later SIGTERMs, and one that arrives
    while the report is being written (the session is already stopping), only get recorded: the report is
    finished first (a supervisor's SIGKILL still ends it; the state stays resumable).
    """
    from qf.paper.session import REPORTING  # lazy: backtrader

    received: list[int] = []

    def handler(signum: int, frame: object) -> None:
        received.append(signum)
        if len(received) == 1 and not REPORTING.is_set():
            raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (an embedding application): leave its handler alone
        yield received
        return
    try:
        yield received
    finally:
        signal.signal(signal.SIGTERM, previous)


def paper(
    experiment: Annotated[Path, typer.Argument(help="Experiment YAML file.")],
    broker: Annotated[str | None, typer.Option(
        "--broker", help="sim (offline replay of the experiment's data) or alpaca (default: the YAML's broker).")]
    = None,
    speed: Annotated[float, typer.Option(
        "--speed", help="Replay pace of --broker sim in bars per second (0 = as fast as possible).")] = 0.0,
    state_dir: Annotated[Path | None, typer.Option(
        "--state-dir", help="Session state folder (default .qf/paper/<name>-<broker>); reuse it to resume.")]
    = None,
    flatten: Annotated[bool, typer.Option(
        "--flatten", help="Cancel every open order, close every position and exit.")] = False,
    max_bars: Annotated[int | None, typer.Option(
        "--max-bars", help="Stop after this many newly processed bars (the state is kept).")] = None,
    set_: Annotated[list[str] | None, typer.Option(
        "--set", help="Override a value: dotted.path=value (repeatable).")] = None,
    gate: Annotated[Path | None, typer.Option(
        "--gate", help="Go/no-go gate file: print GO (exit 0) or NO-GO (exit 3) after the session.")] = None,
) -> None:
    """Paper-trade an experiment in a backtrader live session; stop with Ctrl-C, run again to resume.

    --broker sim replays the experiment's data against backtrader's simulated broker: no keys needed.

    --broker alpaca reads ALPACA_API_KEY and ALPACA_SECRET_KEY from the environment (and ALPACA_*_URL).

    Every session writes a report (kind: paper) that `qf report compare` puts next to the backtest.
    """
    check_gate_file(gate)  # a bad gate file fails before the session (exit 2)
    with _sigterm_as_interrupt() as terminated:
        try:
            exp_name, outcome, pace = _run(experiment, broker, speed, state_dir, flatten, max_bars, set_)
        except KeyboardInterrupt:  # before the session started (loading): nothing to report
            err.print("interrupted")
            raise typer.Exit(143 if terminated else 130) from None
    if outcome.status == "finished":
        out.print(f"{exp_name}: the replay had already finished ({outcome.bars_total} bar(s), last "
                  f"{outcome.equity.index[-1]:%Y-%m-%d}); nothing to run")
        out.print(f"report: {outcome.report_dir}")
        out.print(f"state: {outcome.state_dir} (finished; remove it, or use another --state-dir, to replay again)")
        return
    what = {"done": "replay finished", "stopped": "stopped after --max-bars", "flattened": "flattened",
            "interrupted": "stopped by SIGTERM" if terminated else "interrupted"}[outcome.status]
    out.print(f"{exp_name}: {what}; {outcome.bars_done} new bar(s), {outcome.bars_total} in the session, "
              f"{len(outcome.orders)} fill(s){'; HALTED by a risk rule' if outcome.halted else ''}")
    if outcome.broker == "sim" and pace.summary():
        out.print(pace.summary())  # the achieved replay speed, and whether --speed could be kept
    if outcome.metrics is not None:
        print_summary(f"{exp_name} (paper, {outcome.broker})", outcome.metrics, out)
    if outcome.report_dir is not None:
        out.print(f"report: {outcome.report_dir}")
    if outcome.status == "done":
        out.print(f"state: {outcome.state_dir} (the replay is finished)")
    else:
        out.print(f"state: {outcome.state_dir} (run the same command to resume)")
    if outcome.status == "interrupted" or terminated:
        raise typer.Exit(143 if terminated else 130)
    verdict = gate_after_paper(experiment, set_, gate, outcome.report_dir)  # --gate or the YAML's gate:
    if verdict:
        raise typer.Exit(verdict)


def _run(experiment: Path, broker: str | None, speed: float, state_dir: Path | None, flatten: bool,
         max_bars: int | None, set_: list[str] | None) -> tuple[str, Any, Any]:
    """Load the experiment and run the session with the live view: (experiment name, PaperOutcome, Pace).

    A user error is printed and exits 2 here.
    """
    from qf.config.loader import load_experiment  # lazy: pandas
    from qf.paper.session import PaperOptions, run_paper  # lazy: backtrader
    from qf.paper.view import Pace, render, status_line  # lazy: numba

    try:
        exp = load_experiment(experiment, list(set_ or []))
        options = PaperOptions(broker=broker, speed=speed, state_dir=state_dir, flatten=flatten, max_bars=max_bars)
        pace = Pace(speed)

        def paced(view: Any) -> Pace | None:
            # count the processed bars of a replay (a live session's pace is the market's)
            if view.mode != "sim":
                return None
            if view.event == "bar":
                pace.bar(time.monotonic())
            return pace
        if err.is_terminal:
            from rich.live import Live

            last = [0.0]
            latest: list = [None]
            with Live(console=err, refresh_per_second=4, transient=False) as live:
                def show(view):  # at most ~10 redraws a second, whatever the replay speed
                    latest[0] = view
                    shown = paced(view)
                    now = time.monotonic()
                    if now - last[0] >= 0.1:
                        last[0] = now
                        live.update(render(view, shown))

                try:
                    outcome = run_paper(exp, options, on_update=show)  # fires the lifecycle hooks (kind "paper")
                finally:
                    if latest[0] is not None:  # the last state, even if throttled away
                        live.update(render(latest[0], pace if latest[0].mode == "sim" else None))
        else:
            was_halted = [False]

            def line(view):
                # one line per processed bar (a fast replay: only the bars where something happened)
                if view.event == "order":
                    return
                shown = paced(view)
                news = view.stops or view.halted != was_halted[0] or view.event != "bar" or view.message
                was_halted[0] = view.halted
                if view.mode != "sim" or speed > 0 or news:
                    err.print(escape(status_line(view, shown)), highlight=False)

            outcome = run_paper(exp, options, on_update=line)
    except QfError as exc:
        _fail(exc)
    return exp.name, outcome, pace
