"""Built-in sizers, registered through the ``qf`` entry-point group like any third-party plugin."""

from qf import hookimpl
from qf.components import Sizer
from qf_plugins.sizers.black_litterman import BlackLitterman
from qf_plugins.sizers.equal import EqualWeight
from qf_plugins.sizers.hrp import Hrp
from qf_plugins.sizers.inverse_vol import InverseVol
from qf_plugins.sizers.kelly import Kelly
from qf_plugins.sizers.quantile_kelly import QuantileKelly
from qf_plugins.sizers.vol_target import VolTarget


@hookimpl
def qf_sizers() -> list[type[Sizer]]:
    return [BlackLitterman, EqualWeight, Hrp, InverseVol, Kelly, QuantileKelly, VolTarget]
