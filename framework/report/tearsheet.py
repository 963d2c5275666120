"""The quantstats HTML tear sheet, quiet and titled after the experiment."""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path

import pandas as pd


def write_tearsheet(returns: pd.Series, benchmark: pd.Series | None, path: Path, title: str) -> None:
    """Write quantstats' full HTML report for ``returns`` (with ``benchmark``) to ``path``.

    Example::

        write_tearsheet(rets, bench_rets, Path("reports/x/run/tearsheet.html"), "hrp_swing")
    """
    import matplotlib

    matplotlib.use("Agg")
    # quantstats asks matplotlib for Arial on every figure; without it installed that is one log line
    # per call, hundreds per report
    logging.getLogger("matplotlib.font_manager").setLevel(logging.ERROR)
    import quantstats as qs

    rets = returns.copy()
    rets.name = "Strategy"
    bench = None
    if benchmark is not None:
        bench = benchmark.reindex(rets.index).fillna(0.0)
        bench.name = benchmark.name or "Benchmark"
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        qs.reports.html(rets, benchmark=bench, output=str(path), title=title, download_filename=path.name)
    import matplotlib.pyplot as plt

    plt.close("all")
