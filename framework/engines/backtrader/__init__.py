"""The event-driven engine on backtrader: the strategy that calls the shared decision step, its data feed
and commission scheme.

* :mod:`qf.engines.backtrader.strategy` -- :class:`QfStrategy`, :func:`run_backtrader`, broker set-up.
* :mod:`qf.engines.backtrader.feed` -- qf bars as backtrader data feeds.
* :mod:`qf.engines.backtrader.commission` -- qf's fee model as a backtrader commission scheme.
"""
