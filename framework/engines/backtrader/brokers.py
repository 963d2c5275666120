"""Backtrader's broker types for code outside qf.engines.backtrader (backtrader is imported only in this
package), e.g. :func:`qf.testing.check_broker`, which must tell a backtest broker from anything else.

Example::

    from qf.engines.backtrader.brokers import is_back_broker

    is_back_broker(SimBroker().create(ExecutionSpec()))   # True: a backtrader BackBroker
"""

from __future__ import annotations

import backtrader as bt


def is_back_broker(obj: object) -> bool:
    """Whether ``obj`` is a backtrader ``BackBroker`` (the simulated broker backtests run on)."""
    return isinstance(obj, bt.brokers.BackBroker)
