"""Test helpers for qf and for plugin authors.

``qf.testing.contracts`` holds the generic contract checks every component must pass (no look-ahead in
signals and sizers, valid weights, idempotent stateless risk rules) and :func:`sample_bars`, synthetic
OHLCV so tests need no downloads. A plugin author's test is one line per contract::

    from qf.testing.contracts import assert_signal_no_lookahead, sample_bars

    def test_my_signal_has_no_lookahead():
        assert_signal_no_lookahead(MySignal({"window": 10}), sample_bars())
"""
