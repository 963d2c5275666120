"""qf from Python (a notebook, a script): the same code path as ``qf run``, results as pandas objects.

``qf.run`` loads the experiment with the CLI's loader (``set=`` are the ``--set`` overrides), runs it
with :func:`qf.runner.run_experiment` without writing anything, and returns a :class:`Result`;
``qf.sweep`` evaluates a ``sweep:`` section and returns the table ``sweep.parquet`` would hold. Bad
input raises the CLI's :class:`~qf.errors.QfError` / :class:`~qf.errors.ConfigError` with the CLI's
message (``err.problems`` lists every line). Heavy libraries (numba, vectorbt, plotly) load when used;
``import qf`` loads this module on the first use of ``qf.run`` / ``qf.sweep`` / ``qf.Result``.

Example::

    import qf

    res = qf.run("experiments/sma_cross.yaml", set={"signal.params.fast": 20})
    res.metrics["sharpe"], res.trades.head(), res.stats()
    res.plot().show()
    table = qf.sweep("experiments/sma_cross.yaml", set={"sweep": {"params": {"signal.params.fast": [10, 20]}}})
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
from rich.console import Console

from qf.config.loader import load_experiment
from qf.errors import QfError
from qf.report import writer
from qf.report.trades import run_trades

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from qf.runner import RunOutcome

Overrides = Mapping[str, Any] | Iterable[str] | None


def _python(value: Any) -> Any:
    """A numpy scalar as the Python number it holds (plain values unchanged)."""
    return value.item() if hasattr(value, "item") and not isinstance(value, list | dict) else value


def _yaml_text(value: Any) -> str:
    """``value`` as the text a user would type after ``--set key=`` (read back as YAML by the loader)."""
    if isinstance(value, str):
        return value  # as typed on the command line: "2020-01-01" is a date, "hrp" a name
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        return ".nan" if value != value else (".inf" if value > 0 else "-.inf")
    if hasattr(value, "item") and not isinstance(value, list | dict):  # a numpy scalar
        value = value.item()
    return json.dumps(value, default=str)  # JSON is YAML: numbers, booleans, null, lists, mappings


def overrides_of(set: Overrides, engine: str | None = None) -> list[str]:
    """The ``--set`` items for a mapping ``{"dotted.path": value}`` (or a list of ``"path=value"``).

    Example::

        overrides_of({"signal.params.fast": 20}, "backtrader")
        # ['signal.params.fast=20', 'execution.engine=backtrader']
    """
    if set is None:
        items: list[str] = []
    elif isinstance(set, Mapping):
        items = [f"{k}={_yaml_text(v)}" for k, v in set.items()]
    elif isinstance(set, str):
        items = [set]
    else:
        items = [str(s) for s in set]
    if engine is not None:
        items.append(f"execution.engine={engine}")
    return items


@dataclass
class Result:
    """One run's results (what ``qf run`` reports), in memory.

    ``equity`` (account value at each close), ``orders`` (every fill), ``trades`` (round trips, see
    :mod:`qf.report.trades`), ``weights`` (the target weights on each rebalance date, weights.parquet),
    ``metrics`` (metrics.json's dict, with the trade summary under ``trades``), ``portfolio`` (the
    vectorbt Portfolio, None under backtrader), ``outcome`` (the underlying :class:`qf.runner.RunOutcome`).

    Example::

        res = qf.run("experiments/sma_cross.yaml")
        res.stats().loc["sharpe"], res.trades["pnl"].sum()
        res.report("/tmp/sma")   # the report folder qf run would write
    """

    outcome: RunOutcome

    @property
    def name(self) -> str:
        return self.outcome.experiment.name

    @property
    def engine(self) -> str:
        return self.outcome.result.engine

    @property
    def equity(self) -> pd.Series:
        return self.outcome.result.equity

    @property
    def orders(self) -> pd.DataFrame:
        return self.outcome.result.orders

    @property
    def trades(self) -> pd.DataFrame:
        return run_trades(self.outcome)

    @property
    def weights(self) -> pd.DataFrame:
        return self.outcome.targets.targets

    @property
    def metrics(self) -> dict[str, Any]:
        self.trades  # noqa: B018 - computes the trade summary into the metrics once
        return self.outcome.metrics

    @property
    def portfolio(self) -> Any:
        return self.outcome.result.extra.get("portfolio")

    def stats(self) -> pd.DataFrame:
        """Every figure of metrics.json as one column named after the experiment (trade statistics as
        ``trades.<name>``), so ``pd.concat([a.stats(), b.stats()], axis=1)`` compares runs.

        Example::

            res.stats().loc[["sharpe", "max_drawdown", "trades.win_rate"]]
        """
        rows: dict[str, Any] = {}
        for key, value in self.metrics.items():
            if isinstance(value, dict):
                rows.update({f"{key}.{k}": v for k, v in value.items() if not isinstance(v, dict | list)})
            elif not isinstance(value, list):
                rows[key] = value
        return pd.DataFrame({self.name: pd.Series(rows, dtype=object)})

    def plot(self) -> go.Figure:
        """A plotly figure: equity above, drawdown below (shared time axis); a dotted line marks where the
        evaluation period starts when warm-up bars precede it.

        Example::

            res.plot().show()
        """
        import plotly.graph_objects as go
        from plotly.subplots import make_subplots

        equity = self.equity
        drawdown = equity / equity.cummax() - 1.0
        fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.7, 0.3], vertical_spacing=0.04)
        fig.add_trace(go.Scatter(x=equity.index, y=equity.to_numpy(), name="equity", mode="lines"), row=1, col=1)
        fig.add_trace(go.Scatter(x=drawdown.index, y=drawdown.to_numpy(), name="drawdown", mode="lines",
                                 fill="tozeroy", line={"color": "firebrick"}), row=2, col=1)
        start = self.outcome.metrics.get("eval_start")
        if start is not None and self.outcome.metrics.get("excluded_bars"):
            for row in (1, 2):
                fig.add_vline(x=str(start), line_dash="dot", line_color="grey", row=row, col=1)
        fig.update_yaxes(title_text="equity", row=1, col=1)
        fig.update_yaxes(title_text="drawdown", tickformat=".0%", row=2, col=1)
        fig.update_layout(title=f"{self.name} ({self.engine})", hovermode="x unified")
        return fig

    def report(self, path: str | Path | None = None) -> Path:
        """Write the report folder ``qf run`` would write (``path`` must be new or empty; default
        ``<report.dir>/<name>/<run-id>``) and return it.

        Example::

            res.report("/tmp/sma20")   # tearsheet.html, metrics.json, trades.csv, ...
        """
        from qf.runner import default_report_dir, write_report  # lazy: numba

        exp = self.outcome.experiment
        writer.check_report_target(Path(path) if path is not None else None, Path(exp.spec.report.dir), exp.name)
        out = Path(path) if path is not None else default_report_dir(exp, writer.new_run_id())
        self.outcome.report_dir = write_report(exp, self.outcome, out, out.name, self.engine)
        return self.outcome.report_dir

    def __repr__(self) -> str:
        m = self.outcome.metrics
        return (f"<qf.Result {self.name} ({self.engine}): sharpe {m.get('sharpe', float('nan')):.3f}, "
                f"total return {m.get('total_return', float('nan')):.2%}, {m.get('n_orders', 0)} orders>")


def run(path: str | Path, set: Overrides = None, engine: str | None = None) -> Result:
    """Run an experiment file like ``qf run PATH --set k=v`` but write nothing; returns a :class:`Result`.

    ``set`` maps dotted paths to values (``{"signal.params.fast": 20}``) or lists ``"path=value"`` items;
    ``engine`` overrides ``execution.engine``. Files with a ``sweep:`` section go to :func:`sweep`.
    Raises :class:`~qf.errors.QfError` (a :class:`~qf.errors.ConfigError` for the file) with the CLI's
    message.

    Example::

        res = qf.run("experiments/hrp_swing.yaml", set={"data.params.start": "2018-01-01"})
        res.equity.iloc[-1], res.metrics["trades"]["win_rate"]
    """
    from qf.runner import run_experiment  # lazy: numba

    exp = load_experiment(path, overrides_of(set, engine))
    if exp.spec.walk_forward is not None:
        raise QfError(f"{path}: has a walk_forward: section; run it with `qf run {path}` (qf.run runs single "
                      "experiments, qf.sweep sweeps)")
    if exp.spec.sweep is not None:
        raise QfError(f"{path}: has a sweep: section; use qf.sweep({str(path)!r}) for its table, or "
                      "set={'sweep': None} to run the file's own parameters")
    outcome = run_experiment(exp, write=False)  # fires the lifecycle hooks (kind "backtest")
    result = Result(outcome)
    result.trades  # noqa: B018 - the trade summary belongs in the metrics from the start
    return result


def sweep(path: str | Path, set: Overrides = None, out: str | Path | None = None,
          max_combos: int | None = None) -> pd.DataFrame:
    """Evaluate the file's ``sweep:`` section like ``qf run`` does and return its table (the swept
    params and each combination's metrics, best first by ``sweep.metric``).

    Nothing is written unless ``out`` is given: then the sweep's whole report folder (sweep.html,
    best.json, the best combination's report) is written there, exactly as ``qf run --out`` would.

    Example::

        table = qf.sweep("experiments/sma_cross.yaml",
                         set={"sweep": {"params": {"signal.params.fast": [10, 20, 50]}, "metric": "sharpe"}})
        table.head()
    """
    from qf.research.sweep import evaluate_grid, grid_of, rank, run_sweep  # lazy: numba
    from qf.runner import lifecycle  # lazy: numba

    exp = load_experiment(path, overrides_of(set), max_combos=max_combos)
    if exp.spec.sweep is None:
        raise QfError(f"{path}: has no sweep: section; add one (or set={{'sweep': {{'params': ...}}}}), "
                      "or use qf.run for a single run")
    if exp.spec.walk_forward is not None:
        raise QfError(f"{path}: has a walk_forward: section; run it with `qf run {path}`")
    if out is not None:
        writer.check_report_target(Path(out), Path(exp.spec.report.dir), exp.name)
    with lifecycle(exp, "sweep") as run:
        if out is not None:
            run.report_dir = run_sweep(exp, Path(out), Console(quiet=True))
            run.read_metrics()
            table = pd.read_parquet(run.report_dir / "sweep.parquet")
        else:
            table = evaluate_grid(exp, exp.data.load(), grid_of(exp))
        table = rank(table, exp.spec.sweep.metric).reset_index(drop=True)
        if out is None:  # nothing written: the hooks get the table and the best row's figures
            run.outcome = table
            run.metrics = {k: _python(v) for k, v in table.iloc[0].items()} if len(table) else {}
    return table
