"""qf: plugin-based backtesting and paper trading.

Plugin code imports the hook marker from here::

    from qf import hookimpl

    @hookimpl
    def qf_signal_models():
        return [MySignal]

Notebooks run experiments through :mod:`qf.api` (loaded on first use, so ``import qf`` stays light)::

    import qf

    res = qf.run("experiments/sma_cross.yaml", set={"signal.params.fast": 20})
    table = qf.sweep("experiments/sma_cross.yaml", set={"sweep": {"params": {"signal.params.fast": [10, 20]}}})
"""

from typing import Any

from qf.hookspecs import hookimpl, hookspec

__version__ = "0.1.0"
__all__ = ["hookimpl", "hookspec", "__version__", "run", "sweep", "Result"]


def __getattr__(name: str) -> Any:
    # the notebook API loads on first use, so ``import qf`` (every plugin's first line) stays light
    if name in ("run", "sweep", "Result"):
        from qf import api

        return getattr(api, name)
    raise AttributeError(f"module 'qf' has no attribute {name!r}")
