"""``qf validate --lookahead``: the look-ahead and warmup checks of :mod:`qf.lookahead` on an experiment's
real data, with a progress bar, one line per finding and exit code 1 when anything is found."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from qf.config.loader import LoadedExperiment
from qf.lookahead import check_experiment, who


def validate_lookahead(exp: LoadedExperiment, out: Console, err: Console) -> None:
    """Check ``exp`` and print ``ok: ...`` with what was probed, or raise :class:`qf.lookahead.LookaheadError`
    listing every finding (the CLI prints one line each and exits with code 1).

    Example::

        validate_lookahead(load_experiment("experiments/sma_cross.yaml"), Console(), Console(stderr=True))
    """
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    with Progress(*columns, console=err, transient=True) as progress:
        task = progress.add_task(f"{exp.name}: look-ahead check", total=None)

        def step(label: str, done: int, total: int) -> None:
            progress.update(task, description=f"{exp.name}: {label}", completed=done, total=total or None)

        report = check_experiment(exp, progress=step)
    for note in report.notes:
        err.print(f"[yellow]note:[/] {escape(note)}", highlight=False, soft_wrap=True)
    report.raise_for()
    parts = [who(exp.signal), who(exp.sizer), *[who(r) for r in exp.risk if not r.stateful]]
    out.print(f"ok: no look-ahead and the warmup contract holds for {', '.join(parts)} "
              f"({report.probes} probes on {report.bars} bars x {report.symbols} symbols)", highlight=False)
