"""Test helpers for qf and for plugin authors: contract checks, sample bars, fake brokers (a plain one and a
backtrader :class:`~qf.components.LiveBroker`, :class:`FakeLiveBroker`, for paper trading without Alpaca).

Everything a plugin's tests need is importable from here; the pytest fixtures (``qf_bars``,
``qf_register``, ``qf_fake_broker``, ...) come from :mod:`qf.testing.fixtures`, which pytest loads by
itself once qf is installed. A plugin author's test is one line per contract::

    from qf.testing import check_signal, check_sizer

    def test_my_signal(qf_bars):
        check_signal(MySignal({"window": 10}), qf_bars)   # valid scores, warm-up, no look-ahead

    def test_my_sizer(qf_bars):
        check_sizer(MySizer(), qf_bars)                    # weights on the rebalance dates, no look-ahead

The finer-grained checks of :mod:`qf.testing.contracts` (``assert_signal_no_lookahead``,
``assert_signal_warmup``, ...) are re-exported too, for tests that need to pick their own inputs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Loaded on first use (PEP 562): pytest imports qf.testing.fixtures, and so this package, at the start of
# every test session in an environment where qf is installed, including projects that never use qf; they
# should not pay for pandas and pydantic.
_EXPORTS: dict[str, str] = {
    "FakeBroker": "qf.testing.fake_broker",
    "FakeData": "qf.engines.backtrader.fake_broker",
    "FakeLiveBroker": "qf.engines.backtrader.fake_broker",
    "FakeLiveBrokerComponent": "qf.testing.fake_broker",
    "FakeOrder": "qf.testing.fake_broker",
    "LiveOrder": "qf.engines.backtrader.fake_broker",
    "WarmupContractWarning": "qf.testing.checks",
    "assert_risk_rule_idempotent": "qf.testing.contracts",
    "assert_risk_rule_no_lookahead": "qf.testing.contracts",
    "assert_signal_no_lookahead": "qf.testing.contracts",
    "assert_signal_valid": "qf.testing.contracts",
    "assert_signal_warmup": "qf.testing.contracts",
    "assert_sizer_no_lookahead": "qf.testing.contracts",
    "assert_sizer_warmup": "qf.testing.contracts",
    "assert_weights_valid": "qf.testing.contracts",
    "check_broker": "qf.testing.checks",
    "check_cost_model": "qf.testing.checks",
    "check_data_source": "qf.testing.checks",
    "check_risk_rule": "qf.testing.checks",
    "check_stateful_rule": "qf.testing.checks",
    "check_signal": "qf.testing.checks",
    "check_sizer": "qf.testing.checks",
    "month_ends": "qf.testing.checks",
    "probe_signal": "qf.testing.checks",
    "probe_weights": "qf.testing.checks",
    "registry_with": "qf.testing.checks",
    "sample_bars": "qf.testing.contracts",
    "signal_when": "qf.testing.waiting",
    "wait_for": "qf.testing.waiting",
    "write_csv_experiment": "qf.testing.projects",
}
# a literal list, so that linters and type checkers see the re-exports of the TYPE_CHECKING block
__all__ = [
    "FakeBroker",
    "FakeData",
    "FakeLiveBroker",
    "FakeLiveBrokerComponent",
    "FakeOrder",
    "LiveOrder",
    "WarmupContractWarning",
    "assert_risk_rule_idempotent",
    "assert_risk_rule_no_lookahead",
    "assert_signal_no_lookahead",
    "assert_signal_valid",
    "assert_signal_warmup",
    "assert_sizer_no_lookahead",
    "assert_sizer_warmup",
    "assert_weights_valid",
    "check_broker",
    "check_cost_model",
    "check_data_source",
    "check_risk_rule",
    "check_signal",
    "check_sizer",
    "check_stateful_rule",
    "month_ends",
    "probe_signal",
    "probe_weights",
    "registry_with",
    "sample_bars",
    "signal_when",
    "wait_for",
    "write_csv_experiment",
]

if TYPE_CHECKING:
    from qf.engines.backtrader.fake_broker import FakeData, FakeLiveBroker, LiveOrder
    from qf.testing.checks import (
        WarmupContractWarning,
        check_broker,
        check_cost_model,
        check_data_source,
        check_risk_rule,
        check_signal,
        check_sizer,
        check_stateful_rule,
        month_ends,
        probe_signal,
        probe_weights,
        registry_with,
    )
    from qf.testing.contracts import (
        assert_risk_rule_idempotent,
        assert_risk_rule_no_lookahead,
        assert_signal_no_lookahead,
        assert_signal_valid,
        assert_signal_warmup,
        assert_sizer_no_lookahead,
        assert_sizer_warmup,
        assert_weights_valid,
        sample_bars,
    )
    from qf.testing.fake_broker import FakeBroker, FakeLiveBrokerComponent, FakeOrder
    from qf.testing.projects import write_csv_experiment
    from qf.testing.waiting import signal_when, wait_for


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'qf.testing' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
