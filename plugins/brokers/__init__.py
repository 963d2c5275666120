"""Built-in brokers."""

from qf import hookimpl
from qf_plugins.brokers.alpaca.plugin import AlpacaBroker
from qf_plugins.brokers.sim import SimBroker


@hookimpl
def qf_brokers():
    return [SimBroker, AlpacaBroker]
