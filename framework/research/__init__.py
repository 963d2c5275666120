"""Array-level research machinery the research engine builds on.

* :mod:`qf.research.grid` -- sweep specs + safe constraint strings -> table of combinations.
* :mod:`qf.research.folds` -- walk-forward folds: adjacent test windows, purge/embargo from training.
* :mod:`qf.research.stats` -- probabilistic / deflated Sharpe ratio, expected maximum Sharpe.
* :mod:`qf.research.executors` -- process-pool and Ray executors that share big arrays once.

Submodules are imported on demand so that ``import qf.research`` stays cheap.
"""
