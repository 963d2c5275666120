"""Hierarchical Risk Parity (Lopez de Prado) as riskfolio-lib defines it, re-estimated at every rebalance.

Where qf's array kernel (:mod:`qf_plugins.sizers.hrp_kernel`) reproduces riskfolio exactly it computes the
weights (~100x faster); every other option is riskfolio's own ``HCPortfolio``.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from qf.bars import Bars
from qf.components import Params as BaseParams
from qf.components import Sizer
from qf_plugins.sizers._common import aligned_signal, daily_returns, positions

Codependence = Literal[
    "pearson", "spearman", "kendall", "gerber1", "gerber2", "abs_pearson", "abs_spearman", "abs_kendall",
    "distance", "mutual_info", "tail",
]
Linkage = Literal["single", "complete", "average", "weighted", "centroid", "median", "ward", "DBHT"]
# risk measures riskfolio's HRP evaluates without an external solver
RiskMeasure = Literal[
    "MV", "vol", "MAD", "MSV", "FLPM", "SLPM", "CVaR", "VaR", "WR", "KT", "TG", "CVRG", "MDD", "ADD", "DaR",
    "CDaR", "UCI",
]
Backend = Literal["auto", "riskfolio"]


def hrp_weights(returns: pd.DataFrame, codependence: str, linkage: str, rm: str,
                backend: Backend = "auto") -> pd.Series:
    """HRP weights of ``returns``' columns (summing to 1), indexed like the columns.

    ``backend="auto"`` uses qf's kernel when :func:`uses_kernel` says it reproduces riskfolio for this
    configuration, riskfolio otherwise; ``"riskfolio"`` always calls riskfolio.

    Example::

        hrp_weights(daily_returns_frame, "pearson", "single", "MV")  # -> Series of weights, sum 1
    """
    if uses_kernel(codependence, linkage, rm, backend):
        from qf_plugins.sizers.hrp_kernel import hrp_weights_kernel  # lazy: scipy

        return pd.Series(hrp_weights_kernel(returns.to_numpy(dtype=float), codependence, linkage),
                         index=returns.columns)
    return riskfolio_hrp_weights(returns, codependence, linkage, rm)


def uses_kernel(codependence: str, linkage: str, rm: str, backend: Backend = "auto") -> bool:
    """Whether :func:`hrp_weights` computes this configuration with qf's kernel rather than riskfolio.

    Example::

        uses_kernel("pearson", "single", "MV")   # -> True
        uses_kernel("kendall", "single", "MV")   # -> False
    """
    if backend == "riskfolio":
        return False
    # imported here: the kernel module compiles numba code, which listing commands must not pay for
    from qf_plugins.sizers.hrp_kernel import kernel_covers  # lazy: scipy

    return kernel_covers(codependence, linkage, rm)


def riskfolio_hrp_weights(returns: pd.DataFrame, codependence: str, linkage: str, rm: str) -> pd.Series:
    """riskfolio-lib's HRP weights of ``returns``' columns (summing to 1), indexed like the columns.

    riskfolio prints progress and raises numerical warnings on small samples; both are silenced here so a
    backtest's output stays readable. Its result is re-indexed by name, because riskfolio may return the
    assets in its clustering order rather than the input order.

    Example::

        riskfolio_hrp_weights(daily_returns_frame, "kendall", "ward", "CVaR")
    """
    import riskfolio as rp

    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(
        io.StringIO()
    ):
        warnings.simplefilter("ignore")
        port = rp.HCPortfolio(returns=returns.copy())
        w = port.optimization(model="HRP", codependence=codependence, rm=rm, linkage=linkage, leaf_order=True)
    return w["weights"].reindex(returns.columns).astype(float)


class Hrp(Sizer):
    """Hierarchical Risk Parity weights of the selected assets (signal > 0), as riskfolio-lib defines them.

    At each rebalance date t, HRP (``rp.HCPortfolio(...).optimization(model="HRP")``) runs on the last
    ``window`` daily returns up to t of the selected assets that have that much history (a newly listed
    or flat-priced asset waits until it has). Fewer such assets than ``min_assets``: equal weight among
    them (one asset gets 1). None: all zeros (flat). Weights are long only and sum to 1.

    ``codependence``, ``linkage`` and ``rm`` are passed to riskfolio unchanged (see its ``HCPortfolio``
    docs); the defaults are classic HRP: Pearson correlation distance, single linkage, variance. The
    ``DBHT`` linkage only works from 4 assets on, so it requires ``min_assets >= 4``.

    ``backend: auto`` computes Pearson or Spearman codependence with single, average, complete or ward
    linkage and the variance (``MV``) risk measure with qf's kernel, which equals riskfolio to ~1e-16 and
    is ~100x faster; any other combination, or ``backend: riskfolio``, calls riskfolio. ``info`` (and the
    run's manifest) says which one ran.

    YAML::

        sizer:
          type: hrp
          params:
            window: 252
            codependence: pearson
            linkage: single
            rm: MV
            min_assets: 2
    """

    name = "hrp"

    class Params(BaseParams):
        window: int = Field(252, ge=10, description="daily returns in each estimate")
        codependence: Codependence = Field("pearson", description="riskfolio codependence measure")
        linkage: Linkage = Field("single", description="hierarchical clustering linkage")
        rm: RiskMeasure = Field("MV", description="riskfolio risk measure used in the bisection")
        min_assets: int = Field(2, ge=2, description="fewer eligible assets than this: equal weight instead")
        backend: Backend = Field(
            "auto", description="auto: qf's exact HRP kernel where it covers the options, riskfolio otherwise"
        )

        @model_validator(mode="after")
        def _dbht_needs_four(self) -> Hrp.Params:
            # riskfolio's DBHT clustering fails outright on fewer than 4 assets
            if self.linkage == "DBHT" and self.min_assets < 4:
                raise ValueError(
                    f"linkage DBHT needs at least 4 assets: set min_assets to 4 or more (is {self.min_assets})"
                )
            return self

    params: Params

    @property
    def warmup(self) -> int:
        return self.params.window

    @property
    def path(self) -> str:
        """``"kernel"`` or ``"riskfolio"``: what computes the weights for these params."""
        p = self.params
        return "kernel" if uses_kernel(p.codependence, p.linkage, p.rm, p.backend) else "riskfolio"

    @property
    def info(self) -> dict[str, str]:
        """What a run's manifest records about this sizer, e.g. ``{"hrp_path": "kernel"}``."""
        return {"hrp_path": self.path}

    def size(self, signal: pd.DataFrame, bars: Bars, dates: pd.DatetimeIndex) -> pd.DataFrame:
        p = self.params
        selected = (aligned_signal(signal, bars, dates) > 0).to_numpy()
        ret = daily_returns(bars)
        values = ret.to_numpy()
        # per-window frames are built hundreds of times: index plain strings, and give the kernel no dates
        names = pd.Index(ret.columns.to_numpy(dtype=object), dtype=object)
        dated = self.path == "riskfolio"
        w_out = np.zeros(selected.shape)
        for k, i in enumerate(positions(bars, dates)):
            if i < p.window or not selected[k].any():
                continue
            window = values[i - p.window + 1 : i + 1]
            # eligible: selected, a full window of returns, and some variance to measure risk with
            cols = np.flatnonzero(selected[k] & ~np.isnan(window).any(axis=0))
            cols = cols[window[:, cols].std(axis=0) > 0]
            if len(cols) == 0:
                continue
            if len(cols) < p.min_assets:
                w_out[k, cols] = 1.0 / len(cols)
                continue
            frame = pd.DataFrame(window[:, cols], columns=names[cols], copy=False,
                                 index=ret.index[i - p.window + 1 : i + 1] if dated else None)
            w = hrp_weights(frame, p.codependence, p.linkage, p.rm, p.backend).to_numpy()
            if not np.isfinite(w).all() or w.sum() <= 0:
                # riskfolio's output is not trusted blindly: a degenerate window must not leak NaN into orders
                w_out[k, cols] = 1.0 / len(cols)
                continue
            w = np.clip(w, 0.0, None)
            w_out[k, cols] = w / w.sum()
        return pd.DataFrame(w_out, index=dates, columns=bars.close.columns)
