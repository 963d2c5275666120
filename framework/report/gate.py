"""Go/no-go gate of a paper session: thresholds on its report, GO only when every criterion passes.

The gate (:class:`qf.config.schema.GateSpec`: a ``gate:`` section of the experiment or a ``--gate``
file) is evaluated on a paper report folder, from the figures the report already holds, so the gate's
numbers are the report's (``metrics.json`` is written by :func:`qf.report.metrics.compute_metrics` and
its ``trades`` summary by :func:`qf.report.trades.trade_summary`):

- ``min_trades``: closed round trips (``trades.n_closed``) at least;
- ``min_win_rate``: share of closed trades with a positive P&L (``trades.win_rate``) at least;
- ``volatility: {target, tolerance}``: annualised volatility of the evaluation period within
  ``target ± tolerance``; ``target: backtest`` is the backtest replay's volatility over the same period;
- ``max_drawdown``: the deepest drawdown (``max_drawdown``, negative) shallower than ``-max_drawdown``;
- ``max_tracking_error``: annualised standard deviation (ddof 1, ``periods_per_year``) of the paper's
  per-bar returns minus the backtest replay's, on the bars both cover in the paper's evaluation period;
- ``min_bars``: evaluated bars at least.

The backtest replay (needed by the last two kinds only) is the experiment run as a backtest on its data
(``qf.runner.run_experiment``, no report written), cut to the paper's evaluation period, or the equity
of a backtest report given with ``--backtest``. Its volatility is ``compute_metrics`` of that curve with the
paper's ``eval_start``.

``qf paper EXP --gate gates.yaml`` and ``qf report gate REPORT --gate gates.yaml`` print GO or NO-GO with
each criterion, write ``gate.json`` and ``gate.html`` into the report, and exit 0 (GO) or 3 (NO-GO).

Example::

    spec = load_gate(Path("gates.yaml"))
    result = evaluate_gate(Path("reports/hrp_swing/20240105-..."), spec)
    result.go, [c.line() for c in result.criteria]
"""

from __future__ import annotations

import html
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from qf.config.loader import format_validation, read_yaml
from qf.config.schema import GateSpec
from qf.engines.result import EngineResult
from qf.errors import ConfigError, QfError
from qf.report.metrics import compute_metrics, eval_returns
from qf.report.page import html_page
from qf.report.tearsheet import add_section

EXIT_GO = 0
EXIT_NO_GO = 3


@dataclass
class Criterion:
    """One gate criterion: what was measured, against what, and whether it passed.

    Example: ``Criterion("win rate", 0.61, ">= 55.00%", True, "0.61 of 23 closed trades")``.
    """

    name: str
    value: float | None
    threshold: str
    passed: bool
    shown: str = ""

    def line(self) -> str:
        verdict = "pass" if self.passed else "FAIL"
        return f"{verdict}  {self.name}: {self.shown or _num(self.value)} (needs {self.threshold})"


@dataclass
class GateResult:
    """The verdict: ``go`` when every criterion passed."""

    criteria: list[Criterion]
    report: str
    backtest: str | None = None

    @property
    def go(self) -> bool:
        return all(c.passed for c in self.criteria)

    @property
    def verdict(self) -> str:
        return "GO" if self.go else "NO-GO"

    @property
    def exit_code(self) -> int:
        return EXIT_GO if self.go else EXIT_NO_GO

    def to_json(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "go": self.go, "report": self.report, "backtest": self.backtest,
                "criteria": [{**asdict(c), "value": _clean(c.value)} for c in self.criteria]}


def _clean(v: float | None) -> float | None:
    return None if v is None or not math.isfinite(v) else float(v)


def _num(v: float | None, pct: bool = False) -> str:
    if v is None or not math.isfinite(v):
        return "n/a"
    return f"{v:.2%}" if pct else f"{v:g}"


def load_gate(path: Path, section: bool = False) -> GateSpec | None:
    """A gate file: the :class:`GateSpec` keys at the top level, or under ``gate:``; with ``section`` the
    ``gate:`` section of an experiment file (a report's ``config.yaml``), None when it has none.

    Raises :class:`ConfigError` (one line, ``file:line: key: message``) for a missing, unreadable or
    invalid file.

    Example::

        load_gate(Path("gates.yaml")).min_win_rate   # 0.55
    """
    from pydantic import ValidationError

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: gate file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the gate file: {exc}") from None
    if not text.strip():
        raise ConfigError(f"{path}: the gate file is empty; give at least one criterion, e.g. min_trades: 20")
    raw, src = read_yaml(text, str(path))
    prefix: tuple[Any, ...] = ()
    if "gate" in raw and (section or set(raw) == {"gate"}):
        raw, prefix = raw["gate"], ("gate",)
        if not isinstance(raw, dict):
            raise ConfigError(f"{src.where(prefix)}: gate: expected a mapping of criteria")
    elif section:
        return None
    try:
        return GateSpec.model_validate(raw)
    except ValidationError as exc:
        lines = format_validation(exc, GateSpec, src, prefix)
        raise ConfigError(lines[0], lines) from None


def needs_backtest(spec: GateSpec) -> bool:
    """Whether ``spec`` compares with the backtest replay (tracking error, or volatility target ``backtest``)."""
    return spec.max_tracking_error is not None or (spec.volatility is not None and spec.volatility.target == "backtest")


def read_report(folder: Path) -> tuple[dict[str, Any], pd.Series]:
    """(metrics.json, equity) of a report folder; QfError naming the file when one is missing or broken."""
    folder = Path(folder)
    path = folder / "metrics.json"
    if not path.is_file():
        raise QfError(f"{folder}: not a run folder (no metrics.json)")
    try:
        metrics = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise QfError(f"{path}: cannot read: {exc}") from None
    if not isinstance(metrics, dict):
        raise QfError(f"{path}: expected an object of metrics")
    try:
        equity = pd.read_parquet(folder / "equity.parquet")["equity"].astype(float)
    except Exception as exc:  # pyarrow raises several types for a missing or damaged file
        raise QfError(f"{folder / 'equity.parquet'}: cannot read: {exc}") from None
    return metrics, equity


def _manifest(folder: Path) -> dict[str, Any]:
    """A report's manifest.json ({} when absent or unreadable: the checks that need it are skipped)."""
    try:
        doc = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def backtest_equity(exp: Any) -> tuple[pd.Series, float]:
    """The experiment's backtest equity (run in memory, no report) and its initial cash."""
    from qf.runner import run_experiment  # lazy: numba

    outcome = run_experiment(exp, write=False)
    return outcome.result.equity.astype(float), float(exp.spec.execution.initial_cash)


def backtest_from_report(folder: Path) -> tuple[pd.Series, float]:
    """A backtest report's equity and initial cash (``--backtest``)."""
    metrics, equity = read_report(folder)
    return equity, float(metrics.get("initial_cash") or equity.iloc[0])


def tracking_error(paper: pd.Series, backtest: pd.Series, periods_per_year: float) -> tuple[float, int]:
    """Annualised std (ddof 1) of ``paper - backtest`` per-bar returns on their common bars, and that count.

    Example::

        tracking_error(pd.Series([0.01, 0.0, -0.01], idx), pd.Series([0.0, 0.0, 0.0], idx), 252)
        # (0.01 * sqrt(252), 3)
    """
    both = pd.concat([paper.rename("p"), backtest.rename("b")], axis=1, join="inner").dropna()
    if len(both) < 2:
        return float("nan"), len(both)
    diff = (both["p"] - both["b"]).to_numpy(dtype=float)
    return float(np.std(diff, ddof=1) * math.sqrt(periods_per_year)), len(both)


def evaluate_gate(folder: Path, spec: GateSpec, backtest: tuple[pd.Series, float] | None = None,
                  backtest_label: str | None = None) -> GateResult:
    """Evaluate ``spec`` on the report in ``folder``; ``backtest`` is (equity, initial cash) of the backtest
    replay, required when :func:`needs_backtest` (QfError otherwise).

    Example::

        evaluate_gate(folder, GateSpec(min_trades=20, min_win_rate=0.55)).verdict   # 'GO'
    """
    metrics, equity = read_report(folder)
    trades = metrics.get("trades") if isinstance(metrics.get("trades"), dict) else {}
    out: list[Criterion] = []
    if spec.min_bars is not None:
        v = metrics.get("eval_bars")
        out.append(Criterion("evaluated bars", _f(v), f">= {spec.min_bars}", _f(v) >= spec.min_bars))
    if spec.min_trades is not None:
        v = trades.get("n_closed")
        out.append(Criterion("closed trades", _f(v), f">= {spec.min_trades}", _f(v) >= spec.min_trades))
    if spec.min_win_rate is not None:
        v = _f(trades.get("win_rate"))
        n = trades.get("n_closed")
        out.append(Criterion("win rate", v, f">= {spec.min_win_rate:.2%}", v >= spec.min_win_rate,
                             f"{_num(v, True)} of {n if n is not None else '?'} closed trades"))
    if spec.max_drawdown is not None:
        v = _f(metrics.get("max_drawdown"))
        out.append(Criterion("max drawdown", v, f"> -{spec.max_drawdown:.2%}", v > -spec.max_drawdown, _num(v, True)))
    bt_vol = te = None
    n_common = 0
    if needs_backtest(spec):
        if backtest is None:
            raise QfError("the gate compares with the backtest replay (max_tracking_error or volatility target "
                          "'backtest'): give --backtest REPORT, or the experiment to replay")
        ppy = float(metrics.get("periods_per_year") or 252)
        start = metrics.get("eval_start") if metrics.get("eval_bars") else None
        end = metrics.get("eval_end")
        eq_bt, cash_bt = backtest
        if start is None or end is None:
            raise QfError(f"{folder}: the paper report has no evaluated bar to compare with the backtest")
        first, last = pd.Timestamp(start), pd.Timestamp(end)
        cut = eq_bt.loc[:last]
        if not len(cut) or cut.index[-1] < first or eq_bt.index[0] > first:
            raise QfError(f"the backtest ({eq_bt.index[0]:%Y-%m-%d} to {eq_bt.index[-1]:%Y-%m-%d}) does not cover "
                          f"the paper's evaluation period {first:%Y-%m-%d} to {last:%Y-%m-%d}")
        bt_metrics = compute_metrics(EngineResult("backtest", cut, pd.DataFrame(columns=["time", "quantity", "price",
                                                                                         "fee"]),
                                                  pd.DataFrame(columns=["time", "event", "symbol"]), {}),
                                     cash_bt, eval_start=first)
        bt_vol = float(bt_metrics["volatility"])
        initial = float(metrics.get("initial_cash") or equity.iloc[0])
        te, n_common = tracking_error(eval_returns(equity, initial, first), eval_returns(cut, cash_bt, first), ppy)
    if spec.volatility is not None:
        v = _f(metrics.get("volatility"))
        target = bt_vol if spec.volatility.target == "backtest" else float(spec.volatility.target)
        tol = spec.volatility.tolerance
        what = (f"backtest {_num(target, True)} ± {tol:.2%}" if spec.volatility.target == "backtest"
                else f"{target:.2%} ± {tol:.2%}")
        ok = target is not None and abs(v - target) <= tol + 1e-12
        out.append(Criterion("volatility", v, what, bool(ok), _num(v, True)))
    if spec.max_tracking_error is not None:
        v = _f(te)
        out.append(Criterion("tracking error to the backtest replay", v, f"<= {spec.max_tracking_error:.2%}",
                             v <= spec.max_tracking_error, f"{_num(v, True)} over {n_common} common bars"))
    return GateResult(out, str(folder), backtest_label)


def _f(v: Any) -> float:
    """A metric as a float; NaN when absent (a NaN never passes a criterion: every comparison is False)."""
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else float("nan")


def write_gate(folder: Path, result: GateResult) -> Path:
    """Write ``gate.json`` and ``gate.html`` into the report ``folder``; returns the page."""
    folder = Path(folder)
    (folder / "gate.json").write_text(json.dumps(result.to_json(), indent=2), encoding="utf-8")
    colour = "#1a7f37" if result.go else "#b42318"
    rows = "".join(
        f'<tr><td class="l">{html.escape(c.name)}</td><td class="num">{html.escape(c.shown or _num(c.value))}</td>'
        f'<td class="l">{html.escape(c.threshold)}</td>'
        f'<td class="l" style="color:{"#1a7f37" if c.passed else "#b42318"}">{"pass" if c.passed else "FAIL"}</td></tr>'
        for c in result.criteria)
    body = (f'<h1>Go / no-go: <span style="color:{colour}">{result.verdict}</span></h1>'
            f'<p class="note">Paper report {html.escape(result.report)}'
            + (f"; backtest replay: {html.escape(result.backtest)}" if result.backtest else "") + ". Every criterion "
            "must pass for GO; the figures are the report's metrics.json (qf.report.metrics.compute_metrics).</p>"
            '<table class="qf"><tr><th class="l">criterion</th><th>value</th><th class="l">threshold</th>'
            f'<th class="l">result</th></tr>{rows}</table>')
    page = folder / "gate.html"
    page.write_text(html_page(f"gate: {result.verdict}", body), encoding="utf-8")

    # the verdict also goes on the report's main page (replacing the one of an earlier evaluation)
    add_section(folder / "tearsheet.html", "gate",
                f'<h2>Go / no-go: <span style="color:{colour}">{result.verdict}</span></h2>'
                + body[body.index("<table"):] + '<p><a href="gate.html">gate.html</a>, gate.json</p>')
    return page


def run_gate(folder: Path, spec: GateSpec, exp: Any = None, backtest_dir: Path | None = None) -> GateResult:
    """Evaluate and write the gate of report ``folder``: the backtest replay from ``backtest_dir`` or by
    running ``exp`` (only when the gate needs one).

    Example::

        result = run_gate(outcome.report_dir, exp.spec.gate, exp)
        sys.exit(result.exit_code)
    """
    paper = _manifest(Path(folder))
    if paper.get("kind", "paper") != "paper":
        raise QfError(f"{folder}: a {paper['kind']} report; the gate evaluates paper sessions (qf paper ... --out)")
    backtest = label = None
    if needs_backtest(spec):
        if backtest_dir is not None:
            other = _manifest(Path(backtest_dir))
            if other.get("kind", "backtest") != "backtest":
                raise QfError(f"--backtest {backtest_dir}: a {other['kind']} report, not a backtest")
            if "experiment" in paper and "experiment" in other and paper["experiment"] != other["experiment"]:
                raise QfError(f"--backtest {backtest_dir}: a backtest of {other['experiment']!r}, but the paper "
                              f"session ran {paper['experiment']!r}; the tracking error needs the same experiment")
            backtest, label = backtest_from_report(Path(backtest_dir)), str(backtest_dir)
        elif exp is not None:
            backtest, label = backtest_equity(exp), f"{exp.name} backtest (run in memory)"
    result = evaluate_gate(Path(folder), spec, backtest, label)
    write_gate(Path(folder), result)
    return result
