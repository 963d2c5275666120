"""The numba kernels every engine shares: the per-bar decision, the order planner, the risk rules.

* :mod:`qf.engines.kernels.step` -- :func:`decide_costed_nb`, the one decision both engines and paper make.
* :mod:`qf.engines.kernels.orders` -- targets to signed order sizes at a fill price, cash-aware.
* :mod:`qf.engines.kernels.risk` -- the stateful risk rules' kernel.
"""
