"""One entry point for ``qf run`` on a research experiment: walk-forward, CPCV or a sweep, chosen by the YAML.

The run goes through :func:`qf.runner.lifecycle` (kind ``walk_forward``, ``cpcv`` or ``sweep``): the
``qf_before_run`` / ``qf_after_run`` hooks fire once for the whole study, with the metrics of its report.

Example::

    report_dir = run_research(load_experiment("experiments/sma_cross_sweep.yaml"), None, Console())
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from qf.config.loader import LoadedExperiment
from qf.lookahead import guard_run
from qf.research.cpcv import run_cpcv
from qf.research.sweep import run_sweep
from qf.research.walk_forward import run_walk_forward
from qf.runner import RunKind, lifecycle


def research_kind(exp: LoadedExperiment) -> RunKind:
    """Which study the experiment's YAML asks for: ``walk_forward``, ``cpcv`` or ``sweep``."""
    if exp.spec.walk_forward is not None:
        return "walk_forward"
    if exp.spec.validation is not None:
        return "cpcv"
    return "sweep"


def run_research(exp: LoadedExperiment, out: Path | None, console: Console) -> Path:
    """Run the experiment's walk-forward, CPCV or sweep. With ``execution.check_lookahead`` the experiment's
    own components (the file's params) get the look-ahead check on the data first: a leak is in a
    component's code, whichever combination is chosen later."""
    kind = research_kind(exp)
    with lifecycle(exp, kind) as run:
        if exp.spec.execution.check_lookahead:
            guard_run(exp, exp.data.load())
        runner = {"walk_forward": run_walk_forward, "cpcv": run_cpcv, "sweep": run_sweep}[kind]
        run.report_dir = runner(exp, out, console)
        run.read_metrics()
    return run.report_dir
