"""The ``sim`` broker: backtrader's own simulated broker with qf's cost model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qf.components import Broker, Params


class SimBroker(Broker):
    """Backtrader's ``BackBroker`` with the experiment's cash, proportional and fixed fees.

    Fills, slippage and sizing follow the experiment's ``execution`` section; qf's backtrader strategy
    computes every order's quantity itself, so the broker only has to execute and charge.

    YAML::

        broker: {type: sim}
    """

    name = "sim"

    class Params(Params):
        pass

    def create(self, execution: Any, *, state_dir: Path | None = None) -> Any:
        import backtrader as bt

        from qf.engines.backtrader.commission import QfCommission  # lazy: backtrader

        broker = bt.brokers.BackBroker()
        broker.setcash(execution.initial_cash)
        broker.addcommissioninfo(QfCommission(commission=execution.fees, fixed=execution.fixed_fees))
        return broker
