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

import sys
import types
from typing import Any

from qf.hookspecs import hookimpl, hookspec

__version__ = "0.1.0"
__all__ = ["hookimpl", "hookspec", "__version__", "run", "sweep", "Result"]


class _RunModule(types.ModuleType):
    """The module ``qf.run`` that is also the function ``qf.api.run``.

    ``qf.run`` names both the engine-driving module (``from qf.run import run_experiment``) and the
    notebook call ``qf.run("x.yaml")``; a module cannot be a function, so the module is made callable.
    """

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from qf.api import run

        return run(*args, **kwargs)


class _Package(types.ModuleType):
    # importing the submodule qf.run binds it as this package's attribute "run" (replacing whatever was
    # there): make it callable at that moment, whoever imports it first
    def __setattr__(self, name: str, value: Any) -> None:
        if name == "run" and type(value) is types.ModuleType and value.__name__ == "qf.run":
            value.__class__ = _RunModule
        super().__setattr__(name, value)


def __getattr__(name: str) -> Any:
    if name == "run":
        import qf.run  # noqa: F401 - binding qf.run goes through _Package.__setattr__

        return sys.modules["qf.run"]
    if name in ("sweep", "Result"):
        from qf import api

        return getattr(api, name)
    raise AttributeError(f"module 'qf' has no attribute {name!r}")


sys.modules[__name__].__class__ = _Package
