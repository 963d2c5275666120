"""qf.report.parallel: parts drawn in forked children give what drawing them here gives, whatever the children do."""

from __future__ import annotations

import os
import re
import signal
import sys
import threading
import time

import numpy as np
import pandas as pd
import pytest

from qf.report import parallel
from qf.report.parallel import default_workers, render, split

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="forked parts on Linux only")

PARENT = os.getpid()


def _in_child() -> bool:
    return os.getpid() != PARENT


@pytest.fixture(autouse=True)
def forked(monkeypatch):
    """The pids render() forks in a test; after it, each must be reaped (no zombie, no child still running)."""
    pids: list[int] = []
    fork = parallel._fork

    def recording(*args):
        pid, fd = fork(*args)
        pids.append(pid)
        return pid, fd

    monkeypatch.setattr(parallel, "_fork", recording)
    return pids


def _all_reaped(pids: list[int]) -> bool:
    for pid in pids:
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            continue
        return False
    return True


def _parts(n: int) -> list:
    # each part's result names its index and the process that drew it is irrelevant to the value
    return [lambda i=i: f"part {i}: " + "x" * (i * 1000) for i in range(n)]


@pytest.mark.parametrize("workers", [1, 2, 3, 5])
def test_render_equals_drawing_the_parts_in_order(workers, forked):
    parts = _parts(9)
    assert render(parts, costs=[float(i % 4) for i in range(9)], workers=workers) == [p() for p in parts]
    assert len(forked) == workers - 1 and _all_reaped(forked)


def test_results_larger_than_a_pipe_buffer_come_back_whole():
    big = [lambda i=i: bytes([i]) * (3 << 20) for i in range(4)]  # 3 MB each, a pipe holds 64 KB
    out = render(big, workers=2)
    assert [len(b) for b in out] == [3 << 20] * 4 and [b[:1] for b in out] == [bytes([i]) for i in range(4)]


def test_some_parts_really_are_drawn_in_a_child():
    where = render([lambda: os.getpid(), lambda: os.getpid()], workers=2)
    assert where[0] == PARENT and where[1] != PARENT


def test_a_part_that_raises_in_a_child_raises_here_after_the_children_are_reaped(forked):
    def boom() -> str:
        raise ValueError(f"bad part (drawn in pid {os.getpid()})")

    parts = [lambda: "a", boom, lambda: "c", lambda: "d"]
    with pytest.raises(ValueError, match=f"drawn in pid {PARENT}"):
        render(parts, costs=[1, 1, 1, 1], workers=2)
    assert forked and _all_reaped(forked)


def test_a_child_killed_mid_share_costs_nothing_but_time(forked):
    def dies_in_child(i: int) -> str:
        if _in_child():
            os.kill(os.getpid(), signal.SIGKILL)
        return f"drawn {i}"

    parts = [lambda i=i: dies_in_child(i) for i in range(6)]
    assert render(parts, workers=3) == [f"drawn {i}" for i in range(6)]
    assert forked and _all_reaped(forked)


def test_a_child_that_exits_without_sending_is_redrawn_here():
    def leaves(i: int) -> str:
        if _in_child():
            os._exit(0)
        return str(i)

    assert render([lambda i=i: leaves(i) for i in range(4)], workers=2) == ["0", "1", "2", "3"]


def test_this_process_stopping_early_kills_and_reaps_the_children(tmp_path, forked):
    marker = tmp_path / "child-finished"

    def slow_child() -> str:
        if _in_child():
            time.sleep(3)
            marker.write_text("the child outlived render()")
        return "slow"

    def parent_stops() -> str:
        raise KeyboardInterrupt

    t = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        render([parent_stops, slow_child], costs=[1, 1], workers=2)
    assert time.monotonic() - t < 2.5
    assert forked and _all_reaped(forked)
    time.sleep(3.2)
    assert not marker.exists()


def test_no_process_to_fork_means_the_parts_are_drawn_here(monkeypatch, caplog):
    def refused() -> int:
        raise BlockingIOError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(parallel.os, "fork", refused)
    parts = _parts(5)
    assert render(parts, workers=3) == [p() for p in parts]
    assert "could not fork a drawing process" in caplog.text


def test_pipes_above_descriptor_1023_are_read(forked, high_descriptors):
    parts = _parts(4)
    assert render(parts, workers=2) == [p() for p in parts]
    assert len(forked) == 1


def test_split_balances_costs_and_keeps_order():
    assert split([3.0, 1.0, 1.0, 1.0], 2) == [[0], [1, 2, 3]]
    shares = split([0.6, 0.5, 0.35, 0.3, 0.25, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.65], 2)
    assert sorted(i for s in shares for i in s) == list(range(13))
    loads = [sum([0.6, 0.5, 0.35, 0.3, 0.25, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.65][i] for i in s) for s in shares]
    assert max(loads) - min(loads) <= 0.2 and all(s == sorted(s) for s in shares)
    assert split([1.0], 3) == [[0], [], []]


def test_default_workers_is_one_with_other_threads_or_when_told(monkeypatch):
    monkeypatch.delenv(parallel.ENV_WORKERS, raising=False)
    assert default_workers() == min(parallel.MAX_WORKERS, len(os.sched_getaffinity(0)))
    monkeypatch.setenv(parallel.ENV_WORKERS, "1")
    assert default_workers() == 1
    monkeypatch.setenv(parallel.ENV_WORKERS, "3")
    assert default_workers() == 3
    monkeypatch.setenv(parallel.ENV_WORKERS, "many")
    assert default_workers() == 1
    monkeypatch.delenv(parallel.ENV_WORKERS)
    stop = threading.Event()
    daemon = threading.Thread(target=stop.wait, daemon=True)  # e.g. rich's progress refresh
    daemon.start()
    try:
        assert default_workers() == min(parallel.MAX_WORKERS, len(os.sched_getaffinity(0)))
        working = threading.Thread(target=stop.wait)  # a pool's worker, say: it may hold any lock
        working.start()
        try:
            assert default_workers() == 1
        finally:
            stop.set()
            working.join()
    finally:
        stop.set()
        daemon.join()


def test_a_stuck_child_is_killed_and_its_parts_drawn_here(forked, monkeypatch):
    monkeypatch.setattr(parallel, "MIN_PATIENCE", 0.5)

    def stuck(i: int) -> str:
        if _in_child():
            time.sleep(3600)  # a lock another thread held at the fork, say
        return f"drawn {i}"

    t = time.monotonic()
    assert render([lambda i=i: stuck(i) for i in range(4)], workers=2) == [f"drawn {i}" for i in range(4)]
    assert time.monotonic() - t < 10
    assert _all_reaped(forked)


def test_children_write_nothing_to_the_terminal(capfd):
    import logging

    def noisy(i: int) -> str:
        print(f"stdout from part {i}", flush=True)
        print(f"stderr from part {i}", file=sys.stderr, flush=True)
        logging.getLogger("qf.test").warning("log from part %s", i)
        return str(i)

    assert render([lambda i=i: noisy(i) for i in range(2)], costs=[1, 1], workers=2) == ["0", "1"]
    captured = capfd.readouterr()
    assert "part 1" not in captured.out + captured.err  # part 1 was drawn in the child
    assert "stdout from part 0" in captured.out  # this process's own part prints as usual


def _normalized(page: str) -> str:
    # matplotlib draws random ids (clip paths, markers, images) and the time into each SVG; the page carries
    # no other difference between two drawings of the same returns
    page = re.sub(r"<dc:date>[^<]*</dc:date>", "", page)
    return re.sub(r"(?:[pm]|image)[0-9a-f]{10}", "ID", page)


def test_the_tear_sheet_drawn_on_two_processes_is_the_one_drawn_on_one(tmp_path, monkeypatch):
    # also the first page of a process against a later one: quantstats' chart theme once undid itself
    # after the first page
    from qf.report.tearsheet import write_tearsheet

    idx = pd.bdate_range("2019-01-01", periods=400)
    rng = np.random.default_rng(7)
    rets = pd.Series(rng.normal(4e-4, 0.01, len(idx)), index=idx)
    bench = pd.Series(rng.normal(3e-4, 0.009, len(idx)), index=idx, name="SPY")
    pages = {}
    for n in ("1", "2"):
        monkeypatch.setenv(parallel.ENV_WORKERS, n)
        write_tearsheet(rets, bench, tmp_path / f"{n}.html", "parallel", metrics={"sharpe": 1.0})
        pages[n] = (tmp_path / f"{n}.html").read_text()
    assert pages["1"].count("<svg") >= 10
    assert _normalized(pages["1"]) == _normalized(pages["2"])
