"""qf: plugin-based backtesting and paper trading.

Plugin code imports the hook marker from here::

    from qf import hookimpl

    @hookimpl
    def qf_signal_models():
        return [MySignal]
"""

from qf.hookspecs import hookimpl, hookspec

__version__ = "0.1.0"
__all__ = ["hookimpl", "hookspec", "__version__"]
