"""Built-in brokers (the ``alpaca`` broker comes with the Alpaca plugin, :mod:`qf_plugins.alpaca`)."""

from qf import hookimpl
from qf_plugins.brokers.sim import SimBroker


@hookimpl
def qf_brokers():
    return [SimBroker]
