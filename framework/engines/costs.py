"""Cost models as the per-bar, per-symbol arrays the simulation kernels consume.

A cost model (a plugin of kind ``cost``, see :class:`qf.components.CostModel`) never runs inside the
simulation: before it, it turns the bars into a :class:`CostArrays`, computed vectorized, and the numba
kernels (the order planner :func:`qf.engines.kernels.orders.plan_costed_nb`, both engines' fills) only read it.
The slippage fraction charged on an order of ``q`` units of symbol ``k`` filled at bar ``i`` is::

    s = min(slippage[i, k] + impact[i, k] * q ** exponent, MAX_SLIPPAGE)

(buys fill at ``price * (1 + s)``, sells at ``price * (1 - s)``), and no order trades more than
``max_qty[i, k]`` units (the participation cap; the rest is carried to the next bar). Commissions stay
``execution.fees`` (a fraction of the traded value) and ``execution.fixed_fees`` (per order) in every model.

Example::

    arrays = cost_arrays(bars, ExecutionSpec(slippage=0.0005))
    arrays.slippage[0, 0]   # 0.0005: the fixed model, today's constant slippage
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from qf.bars import Bars
from qf.config.schema import ExecutionSpec
from qf.errors import QfError
from qf.registry import get_registry

# an order whose modelled impact would exceed half of the price is charged half of the price: a price
# model stops meaning anything long before, and a fill at a negative price must stay impossible
MAX_SLIPPAGE = 0.5


@dataclass
class CostArrays:
    """What a cost model hands the kernels, each ``[T, N]`` over the run's bars and symbols.

    ``slippage``: the fraction charged on any order; ``impact`` and ``exponent``: the size-dependent part,
    ``impact * q ** exponent`` for ``q`` units; ``max_qty``: the most units an order may trade (``inf`` =
    no cap).

    Example::

        CostArrays.constant((250, 3), slippage=0.0005).max_qty[0, 0]   # inf
    """

    slippage: np.ndarray
    impact: np.ndarray
    exponent: float
    max_qty: np.ndarray

    @classmethod
    def constant(cls, shape: tuple[int, int], slippage: float = 0.0) -> CostArrays:
        """A constant slippage fraction, no size-dependent impact, no participation cap.

        Example::

            CostArrays.constant((2, 1), 0.001).slippage   # [[0.001], [0.001]]
        """
        return cls(np.full(shape, float(slippage)), np.zeros(shape), 1.0, np.full(shape, np.inf))

    def check(self, shape: tuple[int, int], who: str) -> CostArrays:
        """Raise a clear error if a model's arrays are not ``shape``, negative, or NaN; return ``self`` as
        float64 C-contiguous arrays (what the kernels take).

        Example::

            CostArrays.constant((2, 1)).check((2, 1), "fixed")
        """
        out = []
        for name in ("slippage", "impact", "max_qty"):
            a = np.ascontiguousarray(getattr(self, name), dtype=np.float64)
            if a.shape != shape:
                raise QfError(f"cost model {who!r}: {name} has shape {a.shape}, the bars are {shape}")
            if np.isnan(a).any() or (a < 0).any():
                raise QfError(f"cost model {who!r}: {name} has NaN or negative values")
            out.append(a)
        if not np.isfinite(self.exponent) or self.exponent <= 0:
            raise QfError(f"cost model {who!r}: exponent must be a positive number, not {self.exponent!r}")
        return CostArrays(out[0], out[1], float(self.exponent), out[2])


def cost_model(execution: ExecutionSpec):
    """The cost-model component of ``execution``: ``execution.costs``, or the ``fixed`` model built from the
    ``execution.slippage`` shorthand when there is none.

    Example::

        cost_model(ExecutionSpec(slippage=0.001)).params.slippage   # 0.001
    """
    spec = execution.costs
    if spec is None:
        return get_registry().get("cost", "fixed").cls({"slippage": execution.slippage})
    return get_registry().get("cost", spec.type).cls(spec.params)


def cost_arrays(bars: Bars, execution: ExecutionSpec) -> CostArrays:
    """The :class:`CostArrays` of a run on ``bars`` under ``execution``'s cost model.

    Example::

        cost_arrays(bars, ExecutionSpec.model_validate(
            {"costs": {"type": "volume_share", "params": {"max_participation": 0.025}}})).max_qty
    """
    model = cost_model(execution)
    bars.require(getattr(model, "needs", ()), f"cost model {model.name!r}")
    return model.arrays(bars).check(bars.close.shape, model.name)
