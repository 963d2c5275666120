"""qf-example-plugin: an external qf plugin providing the ``risk_parity_lite`` sizer.

qf loads this module through the entry point ``qf_example`` of the group ``qf`` (see pyproject.toml) and
calls its ``@hookimpl`` functions. Once installed::

    $ qf plugins          # sizer  risk_parity_lite  qf_example  0.2.0  qf_example_plugin.risk_parity.RiskParityLite

and experiments can say ``sizer: {type: risk_parity_lite, params: {window: 126}}``.
"""

from __future__ import annotations

from qf import hookimpl
from qf.components import Sizer

from qf_example_plugin.risk_parity import RiskParityLite, erc_weights

__all__ = ["RiskParityLite", "erc_weights", "qf_sizers"]


@hookimpl
def qf_sizers() -> list[type[Sizer]]:
    """qf's registration hook for sizers: the classes this plugin provides."""
    return [RiskParityLite]
