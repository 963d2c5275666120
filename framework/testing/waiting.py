"""Polling for tests of threaded components (brokers, streams, emulators)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def wait_for(predicate: Callable[[], Any], timeout: float = 3.0) -> Any:
    """Poll ``predicate`` every 10 ms until it returns something truthy, and return that.

    Raises ``AssertionError`` when ``timeout`` seconds pass first. Example::

        order = wait_for(lambda: broker.order_state(cid) == "filled" and broker.order(cid))
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.01)
    raise AssertionError("condition not met in time")
