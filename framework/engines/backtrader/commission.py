"""qf's cost model as a backtrader commission scheme: a fraction of traded value plus a fixed fee per order.

The vectorbt engine charges ``fees * |size * price| + fixed_fees`` once per order (``price`` already
includes slippage). :class:`QfCommission` charges exactly that in backtrader's ``BackBroker``.

The one subtlety is an order that reverses a position (long 10, sell 25): backtrader executes it as a
closing leg and an opening leg and asks the commission scheme once per leg, which would charge the
fixed fee twice. ``BackBroker._execute`` calls :meth:`profitandloss` exactly once at the start of every
real execution, then :meth:`getcommission` once per leg, then ``confirmexec`` once the fill is booked; the
scheme counts the legs between those two calls and charges the fixed fee on the first leg only. Outside
an execution every call charges the fixed fee. Backtrader's submission-time check (``checksubmit``) pseudo-executes
orders without that call, so it cannot tell the legs of one order from two orders; qf's engine turns that
check off (see :mod:`qf.engines.backtrader.strategy`) and relies on the real execution's cash check instead.
"""

from __future__ import annotations

import backtrader as bt


class QfCommission(bt.CommInfoBase):
    """Stock-like commission: ``commission`` (a fraction, 0.0005 = 5 bp) of traded value + ``fixed`` per order.

    Example::

        broker = bt.brokers.BackBroker()
        broker.addcommissioninfo(QfCommission(commission=0.0005, fixed=1.0))
        QfCommission(commission=0.001, fixed=1.0).getcommission(10, 50.0)  # 1.5
    """

    params = (
        ("commission", 0.0),
        ("fixed", 0.0),
        ("stocklike", True),
        ("commtype", bt.CommInfoBase.COMM_PERC),
        ("percabs", True),  # 0.0005 means 5 bp, not 0.0005 %
    )

    def __init__(self) -> None:
        super().__init__()
        # legs charged so far in the execution under way; None outside an execution
        self._legs: int | None = None

    def profitandloss(self, size: float, price: float, newprice: float) -> float:
        """Backtrader's P&L of ``size`` units bought at ``price`` and valued at ``newprice``.

        Also marks the start of an order execution (see the module docstring).
        """
        self._legs = 0
        return super().profitandloss(size, price, newprice)

    def confirmexec(self, size: float, price: float) -> float:
        """Called by the broker once a fill is booked: the execution is over."""
        self._legs = None
        return abs(size) * price * self.p.commission + self.p.fixed

    def _getcommission(self, size: float, price: float, pseudoexec: bool) -> float:
        # (|size| * price) * commission: the same operations, in the same order, as vectorbt's fee
        fee = abs(size) * price * self.p.commission
        if self._legs is None:
            return fee + self.p.fixed
        self._legs += 1
        return fee + self.p.fixed if self._legs == 1 else fee
