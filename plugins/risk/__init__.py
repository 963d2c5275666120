"""Built-in risk rules, registered through the ``qf`` entry-point group like any third-party plugin."""

from qf import hookimpl
from qf.components import RiskRule
from qf_plugins.risk.correlation_cap import CorrelationCap
from qf_plugins.risk.daily_loss_limit import DailyLossLimit
from qf_plugins.risk.drawdown_halt import DrawdownHalt
from qf_plugins.risk.long_only import LongOnly
from qf_plugins.risk.max_gross import MaxGross
from qf_plugins.risk.max_weight import MaxWeight
from qf_plugins.risk.min_weight import MinWeight
from qf_plugins.risk.stop_loss import StopLoss


@hookimpl
def qf_risk_rules() -> list[type[RiskRule]]:
    return [CorrelationCap, DailyLossLimit, DrawdownHalt, LongOnly, MaxGross, MaxWeight, MinWeight, StopLoss]
