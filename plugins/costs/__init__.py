"""Built-in cost models (``execution.costs: {type: ...}``): fixed, spread, volume_share, almgren_chriss."""

from qf import hookimpl
from qf_plugins.costs.almgren_chriss import AlmgrenChriss
from qf_plugins.costs.fixed import Fixed
from qf_plugins.costs.spread import Spread
from qf_plugins.costs.volume_share import VolumeShare


@hookimpl
def qf_cost_models():
    return [Fixed, Spread, VolumeShare, AlmgrenChriss]
