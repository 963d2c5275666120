"""The experiment file's schema (pydantic v2, unknown fields are errors).

Component sections (``data``, ``signal``, ``sizer``, ``risk[]``, ``broker``) only carry ``type`` and raw
``params`` here; each component's own ``Params`` model validates them once the type is resolved (see
:mod:`qf.config.loader`). ``qf schema`` prints the JSON Schema of :class:`Experiment`.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Any, Literal

from pydantic import ConfigDict, Field, ValidationInfo, field_validator, model_validator

from qf.components import NumbersNotBools

# the largest amount of cash (and order value) a backtest accepts: beyond it float64 sums lose cents and a
# typo such as 1e400 (read as infinity) would run without a word
MAX_CASH = 1e15


# experiment names: the report folder's name (see Experiment.name)
NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]*"


class Strict(NumbersNotBools):
    """Unknown fields, non-finite numbers and booleans given for numbers are errors."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class ComponentSpec(Strict):
    """``{type: <name | module:Class | file.py:Class>, params: {...}}``."""

    type: str = Field(min_length=1)
    params: dict[str, Any] = Field(default_factory=dict)


class BenchmarkSpec(Strict):
    """The tear sheet's benchmark: a symbol of the experiment's data, or another data source.

    ``{symbol: AAPL}`` or ``{type: sample, params: {dataset: sp500_index}}`` (its first symbol).
    """

    type: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    symbol: str | None = None

    @model_validator(mode="after")
    def _one_of(self) -> BenchmarkSpec:
        if self.type is None and self.symbol is None:
            raise ValueError("give a symbol of the data, or a data source type")
        return self


class RebalanceSpec(Strict):
    """When targets are recomputed: ``{every: 5}`` bars, or ``{freq: weekly | month_end | ...}``."""

    freq: Literal["daily", "weekly", "month_end", "quarter_end"] | None = None
    every: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _one_of(self) -> RebalanceSpec:
        if (self.freq is None) == (self.every is None):
            raise ValueError("give exactly one of 'freq' or 'every'")
        return self


class ExecutorSpec(Strict):
    """Where sweeps run: ``local`` (process pool over all cores) or ``ray``.

    For ``ray``: ``address`` is ``local`` (a private instance), ``auto`` (the cluster ``ray start`` made on
    this machine) or ``ray://head:10001``; ``n_jobs`` caps the tasks running at once; ``runtime_env`` is
    Ray's (``pip:``, ``py_modules:``, ``env_vars:`` ...; local-file components and QF_PLUGINS_ALLOW/BLOCK
    are added to it); ``max_retries`` is how often a task whose worker or node died is re-run elsewhere.

    Either kind: a sweep checkpoints its finished rows under ``<report root>/.qf/sweeps/`` as they finish,
    and the same sweep run again resumes from them; ``resume: false`` recomputes every combination (see
    :mod:`qf.research.checkpoint`). Example: ``executor: {kind: ray, address: "ray://head:10001", n_jobs: 64}``.
    """

    kind: Literal["local", "ray"] = "local"
    address: str = "local"
    n_jobs: int | None = Field(default=None, ge=1)
    runtime_env: dict[str, Any] | None = None
    max_retries: int = Field(default=3, ge=0, le=100)
    resume: bool = True


class ExecutionSpec(Strict):
    """How targets become fills; every convention is explicit.

    ``fill``: ``next_open`` decides at the close of t and fills at the open of t+1 (needs open prices);
    ``next_close`` fills at the close of t+1 (for close-only data); ``close`` fills at the close of t,
    the bar the decision was made on. No order fills on a bar the symbol did not trade: it waits for the
    symbol's next real bar. ``on_delist`` says what happens to a symbol whose data ends early (see
    :mod:`qf.engines.inputs`).
    """

    engine: Literal["vectorbt", "backtrader"] = "vectorbt"
    fill: Literal["next_open", "next_close", "close"] = "next_open"
    fees: float = Field(default=0.0, ge=0, lt=0.1, description="fraction of traded value")
    fixed_fees: float = Field(default=0.0, ge=0, le=MAX_CASH, description="per order, in cash")
    slippage: float = Field(default=0.0, ge=0, lt=0.1, description="fraction of price, against the trade")
    initial_cash: float = Field(default=100_000.0, gt=0, le=MAX_CASH)
    fractional: bool = True
    min_order_value: float = Field(default=0.0, ge=0, le=MAX_CASH)
    on_delist: Literal["close", "hold_cash_value"] = Field(
        default="close",
        description="a symbol whose data ends before the others: close its position on its last bar, or keep "
                    "it valued at its last close (never traded again)",
    )
    costs: ComponentSpec | None = Field(
        default=None,
        description="the cost model: {type: fixed | spread | volume_share | almgren_chriss | <plugin>, params: {...}}; "
                    "without it, `slippage` is the fixed model's shorthand. `fees`/`fixed_fees` (the commission) "
                    "apply under every model",
    )
    executor: ExecutorSpec = Field(default_factory=ExecutorSpec)
    check_lookahead: bool = Field(
        default=False,
        description="before simulating, run the look-ahead check of `qf validate --lookahead` on the run's data; "
                    "a look-ahead stops the run, a broken warmup contract is a warning",
    )


    @model_validator(mode="after")
    def _slippage_once(self) -> ExecutionSpec:
        if self.costs is not None and self.slippage:
            fix = ("move it into costs.params" if self.costs.type == "fixed"
                   else "drop `slippage`: the cost model prices the fills")
            raise ValueError(f"give the slippage once: `slippage` is the fixed cost model's shorthand, but "
                             f"costs: {{type: {self.costs.type}}} is set ({fix})")
        return self


class RangeSpec(Strict):
    """``{range: [start, stop, step]}``, inclusive of ``stop`` when the step lands on it."""

    # non-finite bounds are refused by qf.research.grid at the sweep key's line, as one error rather than
    # one per member of the list-or-range union
    model_config = ConfigDict(extra="forbid", allow_inf_nan=True)

    range: tuple[float, float, float]


class SweepSpec(Strict):
    """Parameter sweep: dotted paths to value lists or ranges, constraints, and the ranking metric."""

    params: dict[str, list[Any] | RangeSpec]
    constraints: list[str] = Field(default_factory=list)
    metric: str = "sharpe"
    top: int = Field(default=10, ge=1)

    @field_validator("params")
    @classmethod
    def _not_empty(cls, v: dict) -> dict:
        if not v:
            raise ValueError("list at least one parameter to sweep")
        return v


class WalkForwardSpec(Strict):
    """Walk-forward windows, in bars. Parameters are chosen on each train window only."""

    train: int = Field(gt=1)
    test: int = Field(gt=0)
    step: int | None = Field(default=None, gt=0)
    anchored: bool = False
    purge: int = Field(default=0, ge=0)
    embargo: int = Field(default=0, ge=0)
    metric: str = "sharpe"


class ValidationSpec(Strict):
    """Combinatorial purged cross-validation of a sweep's choice (see :mod:`qf.research.overfitting`)."""

    method: Literal["cpcv"] = "cpcv"
    n_groups: int = Field(default=6, ge=2, description="contiguous groups the evaluation period is cut into")
    n_test_groups: int = Field(default=2, ge=1, description="groups tested by each split (< n_groups)")
    purge: int = Field(default=0, ge=0, description="train bars dropped before every test group")
    embargo: int = Field(default=0, ge=0, description="train bars dropped after every test group")

    @model_validator(mode="after")
    def _fewer_test_groups(self) -> ValidationSpec:
        if self.n_test_groups >= self.n_groups:
            raise ValueError(f"n_test_groups ({self.n_test_groups}) must be smaller than n_groups ({self.n_groups})")
        return self


class DriftSpec(Strict):
    """``paper: {drift: ...}``: PSI/KS drift of the signal's output (and of every feature a signal exposes)
    against the reference window before the session, per bar (see :mod:`qf.paper.drift`).

    Example::

        paper:
          drift: {psi_threshold: 0.1, ks_pvalue: 0.01, window: 20, reference_bars: 252,
                  reference_end: 2019-12-31, retrain_on_drift: false}
    """

    psi_threshold: float = Field(default=0.1, gt=0, description="PSI above which a variable is drifting")
    ks_pvalue: float | None = Field(default=None, gt=0, lt=1,
                                    description="KS p-value below which a variable drifts (None: KS only reported)")
    window: int = Field(default=20, ge=2, description="trailing session bars each measurement pools")
    reference_bars: int | None = Field(default=252, ge=2,
                                       description="bars of the reference window (None: all bars up to reference_end)")
    reference_end: date | None = Field(default=None,
                                       description="last reference bar (default: the bar before the session)")
    bins: int = Field(default=10, ge=2, le=100, description="PSI bins (quantiles of the reference)")
    features: bool = Field(default=True, description="also measure every feature a FeatureSource signal exposes")
    retrain_on_drift: bool = Field(default=False, description="refit a trainable signal when drift starts")
    retrain_bars: int = Field(default=504, ge=2, description="trailing bars a drift refit trains on")
    retrain_cooldown: int | None = Field(default=None, ge=1,
                                         description="bars between two refits (default: window)")


class PaperSpec(Strict):
    """Paper-session options beyond the broker: ``drift`` (absent: no drift monitoring)."""

    drift: DriftSpec | None = None


class VolatilityGate(Strict):
    """Realised annualised volatility within ``target`` ± ``tolerance``; ``target: backtest`` is the
    volatility of the backtest replay of the same period."""

    target: float | Literal["backtest"]
    tolerance: float = Field(ge=0)

    @field_validator("target")
    @classmethod
    def _positive(cls, v: float | str) -> float | str:
        if isinstance(v, float | int) and v <= 0:
            raise ValueError("must be > 0 or 'backtest'")
        return v


class GateSpec(Strict):
    """Go/no-go thresholds for a paper session (``gate:`` in the experiment or a ``--gate`` file, see
    :mod:`qf.report.gate`). Every criterion given must pass for GO; absent criteria are not checked.

    Example::

        min_trades: 20
        min_win_rate: 0.55
        volatility: {target: 0.15, tolerance: 0.02}
        max_drawdown: 0.15
        max_tracking_error: 0.05
    """

    min_trades: int | None = Field(default=None, ge=0, description="closed round trips at least")
    min_win_rate: float | None = Field(default=None, ge=0, le=1, description="share of closed trades won")
    volatility: VolatilityGate | None = None
    max_drawdown: float | None = Field(default=None, gt=0, le=1, description="drawdown shallower (0.15 = 15 %)")
    max_tracking_error: float | None = Field(default=None, ge=0,
                                             description="annualised std of paper minus backtest-replay returns")
    min_bars: int | None = Field(default=None, ge=1, description="evaluated bars at least")

    @model_validator(mode="after")
    def _something(self) -> GateSpec:
        if all(getattr(self, k) is None for k in type(self).model_fields):
            raise ValueError("a gate needs at least one criterion (min_trades, min_win_rate, volatility, "
                             "max_drawdown, max_tracking_error, min_bars)")
        return self


class ReportSpec(Strict):
    """Where and what to write. ``dir`` is relative to the working directory."""

    dir: str = "reports"
    tearsheet: bool = True
    title: str | None = None


class Experiment(Strict):
    """One experiment file.

    Example::

        name: sma_spx
        data: {type: sample, params: {dataset: arch_sp500}}
        signal: {type: sma_cross, params: {fast: 20, slow: 100}}
        sizer: {type: equal}
        rebalance: {freq: daily}
        execution: {fill: next_open, fees: 0.0005}
    """

    # the name becomes a folder of the report root: a slug, so it can never climb out of it (``..``), hide
    # itself (``.x``) or nest (``a/b``)
    name: str = Field(min_length=1, max_length=100, json_schema_extra={"pattern": NAME_PATTERN})
    description: str = ""
    data: ComponentSpec
    benchmark: BenchmarkSpec | None = None
    signal: ComponentSpec
    sizer: ComponentSpec
    risk: list[ComponentSpec] = Field(default_factory=list)
    rebalance: RebalanceSpec = Field(default_factory=lambda: RebalanceSpec(freq="daily"))
    execution: ExecutionSpec = Field(default_factory=ExecutionSpec)
    broker: ComponentSpec = Field(default_factory=lambda: ComponentSpec(type="sim"))
    sweep: SweepSpec | None = None
    walk_forward: WalkForwardSpec | None = None
    validation: ValidationSpec | None = None
    paper: PaperSpec | None = None
    gate: GateSpec | None = None
    report: ReportSpec = Field(default_factory=ReportSpec)

    @field_validator("validation")
    @classmethod
    def _one_validation_scheme(cls, v: ValidationSpec | None, info: ValidationInfo) -> ValidationSpec | None:
        # walk_forward is validated first (declared before); a sweep combination's document drops it
        if v is not None and info.data.get("walk_forward") is not None:
            raise ValueError("cpcv and walk_forward are two validation schemes; keep one")
        return v

    @field_validator("name")
    @classmethod
    def _safe_name(cls, v: str) -> str:
        if not re.fullmatch(NAME_PATTERN, v):
            raise ValueError(f"{v!r} is not a safe folder name: use letters, digits, '_', '.' and '-', "
                             "starting with a letter or digit")
        return v
