"""One entry point for ``qf run`` on a research experiment: walk-forward, CPCV or a sweep, chosen by the YAML.

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


def run_research(exp: LoadedExperiment, out: Path | None, console: Console) -> Path:
    """Run the experiment's walk-forward, CPCV or sweep. With ``execution.check_lookahead`` the experiment's
    own components (the file's params) get the look-ahead check on the data first: a leak is in a
    component's code, whichever combination is chosen later."""
    if exp.spec.execution.check_lookahead:
        guard_run(exp, exp.data.load())
    if exp.spec.walk_forward is not None:
        return run_walk_forward(exp, out, console)
    if exp.spec.validation is not None:
        return run_cpcv(exp, out, console)
    return run_sweep(exp, out, console)
