"""One-line contract checks per component kind, for plugin authors (built on :mod:`qf.testing.contracts`).

Each ``check_*`` runs every contract qf holds that kind of component to and returns what the component
produced, so a plugin's test can go on to check its own behaviour::

    from qf.testing import check_signal, check_sizer

    def test_contracts(qf_bars):
        signal = check_signal(MySignal({"window": 10}), qf_bars)
        check_sizer(MySizer(), qf_bars, signal=signal)

Every failure is an ``AssertionError`` whose message names the component, and for data the symbol and
date.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Literal

import numpy as np
import pandas as pd

from qf.bars import Bars, validate
from qf.components import (
    Broker,
    CostModel,
    DataSource,
    RiskRule,
    RuleStatus,
    SignalModel,
    Sizer,
    StatefulRiskRule,
    history_of,
)
from qf.config.schema import ExecutionSpec
from qf.engines.costs import CostArrays
from qf.errors import DataError, QfError
from qf.lookahead import RANDOM_PROBES, probe_positions
from qf.registry import Registry, new_plugin_manager, register_builtins
from qf.testing.contracts import (
    assert_risk_rule_idempotent,
    assert_risk_rule_no_lookahead,
    assert_signal_no_lookahead,
    assert_signal_valid,
    assert_signal_warmup,
    assert_sizer_no_lookahead,
    assert_sizer_warmup,
    assert_weights_valid,
    sample_bars,
)

__all__ = [
    "WarmupContractWarning",
    "check_broker",
    "check_cost_model",
    "check_data_source",
    "check_risk_rule",
    "check_stateful_rule",
    "check_signal",
    "check_sizer",
    "month_ends",
    "probe_signal",
    "probe_weights",
    "registry_with",
]


WarmupMode = Literal["warn", "raise", "skip"]


class WarmupContractWarning(UserWarning):
    """A component breaks its ``warmup`` contract: paper trading, which starts from the trailing
    ``warmup + 1`` bars, would decide differently from the backtest on the date the message names.

    :func:`check_signal` and :func:`check_sizer` warn with it by default (``warmup="raise"`` makes it a
    failure). Turn it into an error for a whole test suite with pytest's
    ``filterwarnings = ["error::qf.testing.checks.WarmupContractWarning"]``.
    """


def _warmup(check: Any, mode: WarmupMode, *args: Any) -> None:
    """Run a warm-up contract check as ``mode`` says: raise its AssertionError, warn with it, or skip."""
    if mode == "skip":
        return
    if mode not in ("warn", "raise"):
        raise ValueError(f"warmup must be 'warn', 'raise' or 'skip', got {mode!r}")
    try:
        check(*args)
    except AssertionError as exc:
        if mode == "raise":
            raise
        warnings.warn(WarmupContractWarning(str(exc)), stacklevel=3)


def _who(component: Any) -> str:
    """How messages name a component: its kind and YAML name, e.g. ``signal 'ema_trend'``."""
    name = getattr(component, "name", "") or type(component).__name__
    return f"{getattr(component, 'kind', '') or 'component'} {name!r}"


def _is(component: Any, base: type, who: str) -> None:
    if not isinstance(component, base):
        raise AssertionError(f"{who}: expected an instance of {base.__module__}.{base.__name__}, "
                             f"got {type(component).__name__}")
    if not type(component).name:
        raise AssertionError(f"{who}: the class has no `name`, so YAML cannot refer to it")


def registry_with(*plugins: Any) -> Registry:
    """A registry of the built-ins plus ``plugins`` (modules, or objects with ``@hookimpl`` methods),
    without any installed entry point: what the ``qf_register`` fixture gives, for use outside pytest.

    The registry is built as ``qf run`` builds it, so a misspelled hook, a duplicate name or a hook returning
    something other than component classes fails here with qf's own error.

    Example::

        import my_signals
        reg = registry_with(my_signals)
        reg.get("signal", "my_signal").provider    # 'my_signals'
    """
    pm = new_plugin_manager()
    register_builtins(pm)
    for plugin in plugins:
        pm.register(plugin)
    return Registry(pm)


def month_ends(bars: Bars) -> pd.DatetimeIndex:
    """The last bar of each month of ``bars``: a typical set of rebalance dates.

    Example::

        month_ends(sample_bars(n_bars=60))   # 3 dates
    """
    idx = bars.index
    periods = idx.to_period("M")
    last = list(periods[1:] != periods[:-1]) + [True]
    return idx[last]


def probe_signal(bars: Bars) -> pd.DataFrame:
    """A causal long/flat signal for testing sizers: 1 where the close is above its 20-bar mean, else 0.

    NaN for each symbol's first 19 bars and before it lists, like a real model's warm-up, and the
    selection changes over time, so sizers meet every case.
    """
    close = bars.close
    mean = close.rolling(20, min_periods=20).mean()
    return (close > mean).astype(float).where(mean.notna())


def probe_weights(bars: Bars, dates: pd.DatetimeIndex | None = None) -> pd.DataFrame:
    """Uneven long/short weights on ``dates`` (default :func:`month_ends`) for testing risk rules.

    Weights follow the symbols' 20-bar returns, so some are large, some negative and some zero; a
    not-yet-listed symbol gets 0, and the first symbol holds (NaN) on every fourth date.
    """
    dates = month_ends(bars) if dates is None else pd.DatetimeIndex(dates)
    ret = bars.close.pct_change(20, fill_method=None).reindex(dates)
    weights = (ret * 5).clip(-0.6, 0.6).fillna(0.0)
    weights.iloc[1::4, 0] = float("nan")
    return weights


def check_signal(model: SignalModel, bars: Bars | None = None, points: int = RANDOM_PROBES, *,
                 warmup: WarmupMode = "warn") -> pd.DataFrame:
    """Every signal-model contract: the right frame, scores in [-1, 1], NaN only in the warm-up, the
    listed ``fields`` are enough, no look-ahead (probed at every date the signal changes plus ``points``
    random dates), and the ``warmup`` contract (the row computed on the trailing ``warmup + 1`` bars
    equals the full-history row). Returns the signal.

    A broken warm-up contract only makes paper trading diverge from the backtest, so by default it is a
    :class:`WarmupContractWarning`; ``warmup="raise"`` makes it an ``AssertionError``, ``"skip"`` skips it.

    Example::

        signal = check_signal(SmaCross({"fast": 5, "slow": 20}), sample_bars(), warmup="raise")
    """
    bars = sample_bars() if bars is None else bars
    who = _who(model)
    _is(model, SignalModel, who)
    bars.require(model.fields, who=who)
    # the model must be satisfied with the fields it declares: the engines check only those
    only = Bars(**{f: getattr(bars, f) for f in {*model.fields, "close"}}, source=bars.source)
    try:
        signal = assert_signal_valid(model, only)
    except (AttributeError, TypeError) as exc:
        raise AssertionError(f"{who} fails on bars holding only its declared fields {tuple(model.fields)} "
                             f"({type(exc).__name__}: {exc}); list every field it reads in `fields`") from exc
    assert_signal_no_lookahead(model, only, points=points)
    _warmup(assert_signal_warmup, warmup, model, only, points)
    return signal


def check_sizer(
    sizer: Sizer,
    bars: Bars | None = None,
    signal: pd.DataFrame | None = None,
    dates: pd.DatetimeIndex | None = None,
    points: int = RANDOM_PROBES,
    *,
    warmup: WarmupMode = "warn",
) -> pd.DataFrame:
    """Every sizer contract: weights indexed exactly by the rebalance dates, one column per symbol, all
    finite, zero for a symbol not listed yet, no look-ahead (probed at every rebalance date where the
    weights or the signal change plus ``points`` random ones), and the ``warmup`` contract (weights for
    date t from the trailing ``warmup + 1`` bars, for t alone, equal the full run's). Returns the weights.

    ``signal`` defaults to :func:`probe_signal` and ``dates`` to :func:`month_ends` of ``bars``;
    ``warmup`` is ``"warn"``, ``"raise"`` or ``"skip"`` as for :func:`check_signal`.

    Example::

        weights = check_sizer(InverseVol({"window": 20}), sample_bars())
    """
    bars = sample_bars() if bars is None else bars
    who = _who(sizer)
    _is(sizer, Sizer, who)
    signal = probe_signal(bars) if signal is None else signal
    dates = month_ends(bars) if dates is None else pd.DatetimeIndex(dates)
    weights = sizer.size(signal, bars, dates)
    assert_weights_valid(weights, dates, bars.symbols)
    unlisted = bars.close.reindex(dates).isna() & (weights != 0)
    if unlisted.to_numpy().any():
        sym = unlisted.any().idxmax()
        day = unlisted[sym].idxmax()
        raise AssertionError(f"{who}: {sym} is not listed yet on {day:%Y-%m-%d} but gets weight "
                             f"{weights.at[day, sym]!r}")
    assert_sizer_no_lookahead(sizer, signal, bars, dates, points=points)
    _warmup(assert_sizer_warmup, warmup, sizer, signal, bars, dates, points)
    return weights


def check_risk_rule(rule: RiskRule, bars: Bars | None = None, weights: pd.DataFrame | None = None) -> pd.DataFrame:
    """Every risk-rule contract; returns the rule's output weights.

    A stateless rule must return a new frame of the same shape, leave its input alone, keep a hold (NaN)
    a hold, be idempotent (applying it twice changes nothing more), and not look ahead (its output for
    date t is the same from the weights and bars up to t). A stateful rule
    (:class:`qf.components.StatefulRiskRule`) must pass weights through unchanged and keep the stateful
    contract (:func:`check_stateful_rule`). ``weights`` defaults to :func:`probe_weights`.

    Example::

        check_risk_rule(MaxWeight({"limit": 0.2}))
        check_risk_rule(DrawdownHalt({"max_drawdown": 0.2}))
    """
    bars = sample_bars() if bars is None else bars
    who = _who(rule)
    _is(rule, RiskRule, who)
    weights = probe_weights(bars) if weights is None else weights
    if not rule.stateful:
        assert_risk_rule_idempotent(rule, weights, bars)
        assert_risk_rule_no_lookahead(rule, weights, bars)
        out = rule.apply(weights, bars)
        moved = out.isna() != weights.isna()
        if moved.to_numpy().any():
            sym = moved.any().idxmax()
            day = moved[sym].idxmax()
            raise AssertionError(f"{who}: on {day:%Y-%m-%d} {sym} is {weights.at[day, sym]!r} in and "
                                 f"{out.at[day, sym]!r} out; a hold (NaN) must stay a hold and only a hold is NaN")
        return out
    if not isinstance(rule, StatefulRiskRule):
        raise AssertionError(f"{who}: stateful rules must subclass qf.components.StatefulRiskRule")
    out = rule.apply(weights, bars)
    if not (isinstance(out, pd.DataFrame) and out.equals(weights)):
        raise AssertionError(f"{who}: a stateful rule must return the weights unchanged; it acts through step()")
    check_stateful_rule(rule, bars)
    return out


def check_stateful_rule(rule: StatefulRiskRule, bars: Bars | None = None, *, points: int = RANDOM_PROBES) -> None:
    """The stateful-risk-rule contract (:class:`qf.components.StatefulRiskRule`):

    - ``step`` is a staticmethod that compiles with ``numba.cfunc(qf.engines.kernels.risk.SIG)``;
    - ``state_size`` / ``symbol_state_size`` / ``n_inputs`` are whole numbers and ``parameters()``,
      ``initial_state()``, ``initial_symbol_state()`` and ``inputs(bars)`` have the sizes they declare;
    - ``inputs`` uses past data only: the row of bar t computed from the bars up to t (and from the
      trailing ``history`` bars the live path loads) equals the row computed on the whole history, at every
      date the inputs change plus seeded random dates;
    - ``step`` runs on the bars with a held, equally weighted portfolio, returns 0 or 1 at every bar, and
      ``describe`` gives a :class:`qf.components.RuleStatus` of every state it reaches.

    Example::

        check_stateful_rule(StopLoss({"vol_mult": 3.0}), sample_bars())
    """
    from qf.engines.kernels.risk import compose, risk_step_nb  # lazy: numba

    bars = sample_bars() if bars is None else bars
    who = _who(rule)
    if not isinstance(rule, StatefulRiskRule):
        raise AssertionError(f"{who}: stateful rules must subclass qf.components.StatefulRiskRule")
    if type(rule).step is StatefulRiskRule.step:
        raise AssertionError(f"{who}: defines no step(), so the rule would never act")
    if not isinstance(_defined(type(rule), "step"), staticmethod):
        raise AssertionError(f"{who}: step must be a @staticmethod (numba compiles the plain function)")
    T, N = bars.close.shape
    try:
        stack = compose([rule])
        table = stack.table(N)
        state = stack.new_state(N)
        inputs = stack.inputs(bars)
    except QfError as exc:
        raise AssertionError(f"{who}: {exc}") from exc
    k = stack.n_inputs
    if k:
        _check_inputs_causal(rule, stack, bars, inputs, history_of(rule), points, who)
    close = bars.close.ffill().to_numpy(dtype=float)
    first = np.where(np.isfinite(close).any(axis=0), np.isfinite(close).argmax(axis=0), T)
    position = np.zeros(N)
    avg_price = np.full(N, np.nan)
    exits = np.zeros(N, dtype=np.bool_)
    cash = 1_000_000.0
    for t in range(T):
        for n in np.flatnonzero(first == t):  # buy each symbol at its first close, for an equal share of the cash
            position[n] = (1_000_000.0 / N) / close[t, n]
            avg_price[n] = close[t, n]
            cash -= 1_000_000.0 / N
        equity = cash + float(np.nansum(position * close[t]))
        action = risk_step_nb(equity, np.ascontiguousarray(close[t]), position, avg_price, inputs[t], table,
                              stack.params, state, exits)
        if action not in (0, 1):
            raise AssertionError(f"{who}: step() returned {action} at {bars.index[t]:%Y-%m-%d}; it must return "
                                 "1 (flatten) or 0")
        status = stack.describe(state, N)[0][1]
        if not isinstance(status, RuleStatus):  # pragma: no cover - describe() already refuses it
            raise AssertionError(f"{who}: describe() must return qf.components.RuleStatus")


def _defined(cls: type, name: str) -> object:
    """The attribute ``name`` as defined on ``cls`` or its first base defining it (without the descriptor)."""
    for klass in cls.__mro__:
        if name in vars(klass):
            return vars(klass)[name]
    return None


def _check_inputs_causal(rule: StatefulRiskRule, stack: Any, bars: Bars, full: np.ndarray, history: int | None,
                         points: int, who: str) -> None:
    """The truncation test of a rule's per-bar inputs (see :func:`check_stateful_rule`)."""
    T = full.shape[0]
    flat = full.reshape(T, -1)
    same = np.isclose(flat[1:], flat[:-1], equal_nan=True).all(axis=1)
    changes = np.flatnonzero(~same) + 1
    for pos in probe_positions(T, changes, points=points, always=[T - 1]):
        t = bars.index[pos]
        windows = [("the bars up to it", bars.truncate(t))]
        if history is not None:
            trailing = bars.iloc(slice(max(0, pos + 1 - history), pos + 1))
            windows.append((f"its trailing {history} bars (history)", trailing))
        for what, window in windows:
            try:
                row = stack.inputs_row(window)
            except QfError as exc:
                raise AssertionError(f"{who}: {exc}") from exc
            if not np.allclose(row, full[pos], rtol=1e-9, atol=1e-12, equal_nan=True):
                bad = np.flatnonzero(~np.isclose(row, full[pos], rtol=1e-9, atol=1e-12, equal_nan=True).all(axis=0))
                sym = bars.symbols[int(bad[0])]
                raise AssertionError(f"{who}: inputs() look ahead: on {t:%Y-%m-%d} {sym} is "
                                     f"{full[pos][:, bad[0]].tolist()} from the whole history but "
                                     f"{row[:, bad[0]].tolist()} from {what}")


def check_data_source(source: DataSource) -> Bars:
    """Every data-source contract: ``load()`` returns :class:`qf.bars.Bars` that already passed
    :func:`qf.bars.validate` (validating again changes nothing), with a ``source`` label. Returns the bars.

    Example::

        bars = check_data_source(SampleSource({"dataset": "sp500_20", "start": "2020-01-01"}))
    """
    who = _who(source)
    _is(source, DataSource, who)
    bars = source.load()
    if not isinstance(bars, Bars):
        raise AssertionError(f"{who}: load() must return qf.bars.Bars, got {type(bars).__name__}")
    if not bars.source:
        raise AssertionError(f"{who}: the bars have no source label (used in every data error message)")
    try:
        again = validate(bars)
    except DataError as exc:
        raise AssertionError(f"{who}: load() returned bars that fail qf.bars.validate ({exc}); "
                             "end load() with `return validate(Bars(...))`") from exc
    for field in bars.fields:
        before, after = getattr(bars, field), getattr(again, field)
        if not before.equals(after):
            raise AssertionError(
                f"{who}: {field} changes when validated again, so load() did not end with qf.bars.validate "
                f"(first difference in {_first_changed_column(before, after)})"
            )
    return bars


def _first_changed_column(a: pd.DataFrame, b: pd.DataFrame) -> str:
    if not a.index.equals(b.index):
        return "the index"
    for col in a.columns:
        if col not in b.columns or not a[col].equals(b[col]):
            return f"column {col!r}"
    return "the dtypes"


def check_broker(broker: Broker, execution: Any = None) -> Any:
    """The broker contract for backtests: ``create(execution)`` returns a backtrader ``BackBroker`` holding
    exactly ``execution.initial_cash``. Returns the created broker.

    ``execution`` defaults to :class:`qf.config.schema.ExecutionSpec` with its defaults.

    Example::

        bt_broker = check_broker(SimBroker(), ExecutionSpec(initial_cash=50_000))
    """
    from qf.engines.backtrader.brokers import is_back_broker  # lazy: backtrader

    who = _who(broker)
    _is(broker, Broker, who)
    execution = ExecutionSpec() if execution is None else execution
    created = broker.create(execution)
    if not is_back_broker(created):
        raise AssertionError(f"{who}: create() must return a backtrader BackBroker for backtests, "
                             f"got {type(created).__name__}")
    cash = created.getcash()
    if not math.isclose(cash, execution.initial_cash, rel_tol=1e-12):
        raise AssertionError(f"{who}: the broker starts with {cash:,.2f} in cash, not execution.initial_cash "
                             f"{execution.initial_cash:,.2f}")
    return created


def _cost_arrays(model: CostModel, bars: Bars, who: str) -> CostArrays:
    """``model.arrays(bars)`` held to the kernels' input checks, as an AssertionError naming ``who``."""
    out = model.arrays(bars)
    if not isinstance(out, CostArrays):
        raise AssertionError(f"{who}: arrays() must return qf.engines.costs.CostArrays, got {type(out).__name__}")
    try:
        return out.check(bars.close.shape, model.name)
    except QfError as exc:
        raise AssertionError(f"{who}: {exc}") from None


def check_cost_model(model: CostModel, bars: Bars | None = None, points: int = RANDOM_PROBES) -> CostArrays:
    """Every cost-model contract; returns the model's :class:`qf.engines.costs.CostArrays` on ``bars``.

    ``arrays(bars)`` must give arrays of the bars' shape, with a finite, non-negative ``slippage`` and
    ``impact``, a non-negative ``max_qty`` (``inf``: no cap) and a positive ``exponent``, and must not look
    ahead: its rows up to ``t`` are the same from the bars up to ``t`` (probed at ``points`` seeded rows).
    A row may read its own bar (the fill bar, as ``volume_share`` reads its volume), never a later one.
    ``bars`` defaults to :func:`qf.testing.sample_bars` (OHLCV, so any ``needs`` is met).

    Example::

        arrays = check_cost_model(AlmgrenChriss({"window": 20}), qf_bars)
        arrays.impact.shape == qf_bars.close.shape   # True
    """
    bars = sample_bars() if bars is None else bars
    who = _who(model)
    _is(model, CostModel, who)
    try:
        bars.require(getattr(model, "needs", ()), who)
    except DataError as exc:
        raise AssertionError(str(exc)) from None
    full = _cost_arrays(model, bars, who)
    for name in ("slippage", "impact"):
        bad = ~np.isfinite(getattr(full, name))
        if bad.any():
            r, c = np.argwhere(bad)[0]
            raise AssertionError(f"{who}: {name} is {float(getattr(full, name)[r, c])!r} on {bars.index[r]:%Y-%m-%d} "
                                 f"for {bars.symbols[c]}; it must be finite")
    names = ("slippage", "impact", "max_qty")
    for t in probe_positions(len(bars.index) - 1, points=points, start=1):
        part = _cost_arrays(model, bars.iloc(slice(0, t + 1)), who)
        for name in names:
            whole, cut = getattr(full, name)[: t + 1], getattr(part, name)
            diff = ~np.isclose(whole, cut, rtol=1e-9, atol=1e-12, equal_nan=True)
            if diff.any():
                r, c = np.argwhere(diff)[0]
                raise AssertionError(
                    f"{who}: {name} on {bars.index[r]:%Y-%m-%d} for {bars.symbols[c]} is {float(whole[r, c])!r} "
                    f"from all the bars but {float(cut[r, c])!r} from the bars up to {bars.index[t]:%Y-%m-%d}: "
                    "it uses later bars")
    return full
