"""The event-driven engine on backtrader: the strategy that calls the shared decision step, its data feed
and commission scheme.

* :mod:`qf.engines.backtrader.strategy` -- :class:`QfStrategy`, :func:`run_backtrader`, broker set-up.
* :mod:`qf.engines.backtrader.feed` -- qf bars as backtrader data feeds.
* :mod:`qf.engines.backtrader.commission` -- qf's fee model as a backtrader commission scheme.
* :mod:`qf.engines.backtrader.brokers` -- backtrader's broker types for code outside this package
  (:func:`qf.testing.check_broker`).
* :mod:`qf.engines.backtrader.fake_broker` -- :class:`FakeLiveBroker` and :class:`FakeData`, the backtrader
  half of qf.testing's fake brokers (import them from :mod:`qf.testing`).
"""
