"""qf-trailing-stop: an external qf plugin providing the ``trailing_stop`` stateful risk rule.

qf loads this module through the entry point ``qf_trailing_stop`` of the group ``qf`` (see pyproject.toml)
and calls its ``@hookimpl`` functions. Once installed, experiments can say::

    risk:
      - type: trailing_stop
        params: {pct: 0.08}

and the rule acts identically in the vectorbt and backtrader engines and in paper trading: qf compiles its
``step`` with numba and calls it at every decision bar.
"""

from __future__ import annotations

from qf import hookimpl
from qf.components import RiskRule

from qf_trailing_stop.rule import TrailingStop

__all__ = ["TrailingStop", "qf_risk_rules"]


@hookimpl
def qf_risk_rules() -> list[type[RiskRule]]:
    """qf's registration hook for risk rules: the classes this plugin provides."""
    return [TrailingStop]
