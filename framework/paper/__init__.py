"""Paper trading: ``qf paper``, a backtrader live session that is restart-safe and ends in a report.

Modules: :mod:`.session` (:func:`~qf.paper.session.run_paper`, what the CLI calls), :mod:`.strategy` (the
session's growing per-bar arrays and plan), :mod:`.feed` (bar sources), :mod:`.broker` (what a live broker
plugin implements), :mod:`.state` (the session's SQLite state), :mod:`.schedule` (rebalance decisions from a
calendar) and :mod:`.view` (the live terminal view). The backtrader side (the strategies that decide one
completed bar at a time, the live feed, cerebro) is :mod:`qf.engines.backtrader.paper`: the paper layer
imports backtrader only through it.

Example::

    from qf.config.loader import load_experiment
    from qf.paper.session import PaperOptions, run_paper

    outcome = run_paper(load_experiment("experiments/hrp_swing.yaml"), PaperOptions(broker="sim", max_bars=20))
"""
