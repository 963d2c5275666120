"""The ``almgren_chriss`` cost model: square-root market impact from volatility and average daily volume.

The temporary impact of trading ``q`` shares, as a fraction of the price, is::

    impact(q) = eta * sigma * (q / ADV) ** exponent

- ``sigma``: the daily volatility of the symbol (standard deviation of close-to-close log returns);
- ``ADV``: its average daily volume in shares; both over the ``window`` bars before the fill bar, so
  nothing of the fill bar is used;
- ``eta`` and ``exponent``: Almgren, Thum, Hauptmann & Li, "Direct Estimation of Equity Market Impact",
  Risk 18(7), 2005, fitted the temporary impact ``eta * sigma * (X / (V T)) ** beta`` on Citigroup's US
  equity orders with ``eta = 0.142`` and ``beta = 0.6``; ``exponent = 0.5`` (the default) is the
  square-root law they and later studies (Toth et al. 2011) find close to it. The framework is Almgren &
  Chriss, "Optimal Execution of Portfolio Transactions", Journal of Risk 3(2), 2000 (impact as a
  function of the trading rate). One order per bar is taken as trading over one day (``T = 1``).

The order size ``q`` is the target's quantity at the bar's reference price; the impact is charged on top of
it, so there is nothing circular to solve for a single order. When the cash cannot pay the buys, the planner
scales them down by the largest affordable factor, found by bisection (see
:func:`qf.engines.kernels.orders.plan_costed_nb`), and charges each its impact at its final size.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from pydantic import Field

from qf.bars import Bars
from qf.components import CostModel, Params
from qf.engines.costs import CostArrays


class AlmgrenChrissParams(Params):
    eta: float = Field(default=0.142, gt=0, le=10, description="impact coefficient (Almgren et al. 2005: 0.142)")
    exponent: float = Field(default=0.5, gt=0, le=2, description="0.5: the square-root law; 0.6 in Almgren et al.")
    window: int = Field(default=20, ge=2, le=1000, description="bars of volatility and average volume")


class AlmgrenChriss(CostModel):
    """Square-root impact ``eta * sigma * (q / ADV) ** exponent`` (see the module docstring for the source).

    Before ``window`` bars of history (at least two returns) the impact is not known and not charged.

    Example::

        m = AlmgrenChriss({"eta": 0.142, "exponent": 0.5, "window": 20})
        m.arrays(bars).impact[i, k]   # eta * sigma / ADV ** 0.5: times q ** 0.5 per order
    """

    name = "almgren_chriss"
    Params = AlmgrenChrissParams
    needs = ("volume",)

    def arrays(self, bars: Bars) -> CostArrays:
        assert bars.volume is not None
        p = self.params
        close = bars.close.where(pd.DataFrame(bars.traded(), index=bars.index, columns=bars.close.columns))
        rets = np.log(close).diff()
        vol = bars.volume.where(bars.traded(), np.nan)
        # shifted by one bar: the fill bar's own return and volume are not known when its order is sized
        sigma = rets.rolling(p.window, min_periods=2).std().shift(1).to_numpy(dtype=float)
        adv = vol.rolling(p.window, min_periods=1).mean().shift(1).to_numpy(dtype=float)
        ok = np.isfinite(sigma) & np.isfinite(adv) & (adv > 0)
        impact = np.where(ok, p.eta * np.where(ok, sigma, 0.0) / np.where(ok, adv, 1.0) ** p.exponent, 0.0)
        shape = bars.close.shape
        return CostArrays(np.zeros(shape), impact, p.exponent, np.full(shape, np.inf))
