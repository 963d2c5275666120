"""Polling for tests of threaded components (brokers, streams, emulators) and of processes stopped by a signal."""

from __future__ import annotations

import signal
import subprocess
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


def signal_when(proc: subprocess.Popen, ready: Callable[[], Any], sig: int = signal.SIGTERM, timeout: float = 120.0,
                what: str = "the process never got ready", wait: float = 60.0) -> tuple[str, str]:
    """Poll ``ready`` every 50 ms while ``proc`` runs; once it is truthy send ``sig``; return ``proc``'s output.

    For tests of how a command stops (SIGTERM from systemd or docker, SIGINT as a terminal's Ctrl-C) at a
    chosen moment: ``ready`` looks for a sign the process leaves (a marker file, a row in its state). The
    test fails, with the process's output, if it exits before that or ``timeout`` seconds pass; after the
    signal it is given ``wait`` seconds to stop. A process still running at the end is killed, whatever
    happened. ``proc`` must have been started with ``stdout=PIPE, stderr=PIPE, text=True``. Example::

        proc = subprocess.Popen([*qf, "run", "exp.yaml"], cwd=tmp_path, stdout=PIPE, stderr=PIPE, text=True)
        out, err = signal_when(proc, (tmp_path / "computing").exists, what="the run never reached the signal")
        assert proc.returncode == 143 and "Traceback" not in err
    """
    try:
        deadline = time.monotonic() + timeout
        while not ready():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, what
            time.sleep(0.05)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=wait)
        return out, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
