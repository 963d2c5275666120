"""A page's independent parts drawn on the machine's cores: forked children draw some, this process the rest.

A tear sheet is a dozen independent matplotlib charts and tables; drawn one after another they are most of a
run's report time (hrp_swing, 3,000 days: ~3.9 s on one core). :func:`render` splits them by their
estimated cost between this process and ``workers - 1`` children forked from it: a child inherits
everything already imported and the page's inputs (nothing is pickled but the results, as strings), draws
its share and sends it back through a pipe.

The result is the same list that drawing the parts one after another gives, whatever happens to a child:
a part that raised in a child, or that a dead or garbled child never returned, is drawn again here, so its
exception (if any) is raised by this process as it would have been without children. A child is killed by
the kernel if this process dies (Linux ``PR_SET_PDEATHSIG``) and killed and reaped here if this process
stops early (an exception, Ctrl-C).

Forking is only safe from a single-threaded process on Linux: with other Python threads alive (a
``qf watch`` observer, a Ray worker, a test runner's I/O thread), on other systems, or with
``QF_REPORT_WORKERS=1``, :func:`default_workers` is 1 and the parts are drawn here, one after another.

Example::

    svgs = render([lambda: draw(a), lambda: draw(b), lambda: table(c)], costs=[2.0, 1.0, 0.5])
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from typing import TypeVar

from qf.processes import die_with_parent

T = TypeVar("T")

# more processes than this gain little on a page of about a dozen parts
MAX_WORKERS = 4
ENV_WORKERS = "QF_REPORT_WORKERS"


def default_workers() -> int:
    """Processes :func:`render` uses when not told: the usable cores (at most :data:`MAX_WORKERS`) where
    forking is safe, else 1; ``QF_REPORT_WORKERS`` (a positive integer) overrides the core count.

    Example::

        default_workers()   # 2 on a quiet 2-core Linux machine, 1 in a process running other threads
    """
    if not sys.platform.startswith("linux") or not hasattr(os, "fork") or threading.active_count() > 1:
        return 1
    raw = os.environ.get(ENV_WORKERS, "").strip()
    if raw:
        try:
            return max(1, int(raw))
        except ValueError:
            return 1
    return max(1, min(MAX_WORKERS, len(os.sched_getaffinity(0))))


def split(costs: Sequence[float], n: int) -> list[list[int]]:
    """Part indices in ``n`` shares of about equal total cost (largest first to the lightest share); each
    share keeps the parts' order.

    Example::

        split([3.0, 1.0, 1.0, 1.0], 2)   # [[0], [1, 2, 3]]
    """
    shares: list[list[int]] = [[] for _ in range(max(1, n))]
    load = [0.0] * len(shares)
    for i in sorted(range(len(costs)), key=lambda k: -costs[k]):
        j = min(range(len(shares)), key=lambda k: (load[k], k))
        shares[j].append(i)
        load[j] += max(float(costs[i]), 0.0)
    return [sorted(s) for s in shares]


def render(parts: Sequence[Callable[[], T]], costs: Sequence[float] | None = None,
           workers: int | None = None) -> list[T]:
    """``[part() for part in parts]``, with the parts shared between this process and forked children.

    ``costs`` are the parts' relative costs (equal when None); ``workers`` the processes in all, this one
    included (:func:`default_workers` when None). Results must pickle (strings, tables); a part's exception
    is raised here, after the children are reaped.

    Example::

        charts = render([lambda: svg(fig_a), lambda: svg(fig_b)], costs=[1.0, 1.0])
    """
    n = len(parts)
    workers = default_workers() if workers is None else max(1, workers)
    workers = min(workers, n)
    if workers <= 1:
        return [part() for part in parts]
    shares = split(costs if costs is not None else [1.0] * n, workers)
    children: list[tuple[int, int, list[int]]] = []
    results: dict[int, T] = {}
    try:
        for share in shares[1:]:
            children.append((*_fork(parts, share), share))
        for i in shares[0]:
            results[i] = parts[i]()
        for _pid, fd, _share in children:
            results.update(_collect(fd))
    finally:
        for pid, fd, _share in children:
            _reap(pid, fd)
    # what a child raised on or never returned is drawn here: its exception is this process's to raise
    return [results[i] if i in results else parts[i]() for i in range(n)]


def _fork(parts: Sequence[Callable[[], T]], share: list[int]) -> tuple[int, int]:
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: draw the share, send what succeeded, never return into the parent's code
        code = 1
        try:
            os.close(read_fd)
            die_with_parent()
            # Ctrl-C reaches the whole process group: the parent cleans up; the child just ends
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            done: dict[int, T] = {}
            for i in share:
                # a part that raises is left out: the parent draws it again and raises it there
                with contextlib.suppress(Exception):
                    done[i] = parts[i]()
            with os.fdopen(write_fd, "wb") as out:
                pickle.dump(done, out, protocol=pickle.HIGHEST_PROTOCOL)
            code = 0
        finally:
            os._exit(code)  # no atexit handlers, no finally blocks of the parent's frames
    os.close(write_fd)
    return pid, read_fd


def _collect(fd: int) -> dict[int, T]:
    """A child's results (empty if it died or sent something unreadable); the pipe is read to its end."""
    chunks = []
    with contextlib.suppress(OSError):
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
    try:
        done = pickle.loads(b"".join(chunks))
    except Exception:  # noqa: BLE001 - a child killed mid-write: its parts are drawn here
        return {}
    return done if isinstance(done, dict) else {}


def _reap(pid: int, fd: int) -> None:
    """Close the pipe and wait for the child: killed first, as a child still drawing (this process stopped
    early) or one about to exit both may be; its results are already read or no longer wanted."""
    with contextlib.suppress(OSError):
        os.close(fd)
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(OSError):
        os.waitpid(pid, 0)
