"""Built-in signal models, registered through the ``qf`` entry-point group like any third-party plugin."""

from qf import hookimpl
from qf.components import SignalModel
from qf_plugins.signals.breakout import Breakout
from qf_plugins.signals.constant import Constant
from qf_plugins.signals.ensemble import Ensemble
from qf_plugins.signals.mean_reversion import MeanReversion
from qf_plugins.signals.meta_label import MetaLabel
from qf_plugins.signals.momentum import Momentum
from qf_plugins.signals.regime import Regime, RegimeSwitch
from qf_plugins.signals.sma_cross import SmaCross
from qf_plugins.signals.swing import Swing
from qf_plugins.signals.xgb import XGBoostSignal


@hookimpl
def qf_signal_models() -> list[type[SignalModel]]:
    return [Breakout, Constant, Ensemble, MeanReversion, MetaLabel, Momentum, Regime, RegimeSwitch, SmaCross, Swing,
            XGBoostSignal]
