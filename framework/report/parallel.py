"""A page's independent parts drawn on the machine's cores: forked children draw some, this process the rest.

A tear sheet is a dozen independent matplotlib charts and tables; drawn one after another they are most of a
run's report time (hrp_swing, 3,000 days: ~3.9 s on one core). :func:`render` splits them by their
estimated cost between this process and ``workers - 1`` children forked from it: a child inherits
everything already imported and the page's inputs (nothing is pickled but the results, as strings), draws
its share and sends it back through a pipe.

The result is the same list that drawing the parts one after another gives, whatever happens to a child:
a part that raised in a child, or that a dead, garbled or stuck child never returned, is drawn again here,
so its exception (if any) is raised by this process as it would have been without children. A child is
killed by the kernel if this process dies (Linux ``PR_SET_PDEATHSIG``) and killed and reaped here if this
process stops early (an exception, Ctrl-C, SIGTERM).

A fork copies only the forking thread: a lock another thread held at that moment stays held in the child.
The children therefore touch nothing such a thread shares with them: their stdout and stderr go nowhere
(a terminal's progress display keeps its own lock), logging is off, and they only draw and write to their
pipe. A child that still does not answer within :func:`_patience` seconds is killed and its parts drawn
here. Forking is used on Linux while every other Python thread is a daemon (rich's progress refresh, a
watcher); with a non-daemon thread alive (a thread pool at work), on other systems, or with
``QF_REPORT_WORKERS=1``, :func:`default_workers` is 1 and the parts are drawn here, one after another.

Example::

    svgs = render([lambda: draw(a), lambda: draw(b), lambda: table(c)], costs=[2.0, 1.0, 0.5])
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import select
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

from qf.processes import die_with_parent

T = TypeVar("T")
log = logging.getLogger(__name__)

# more processes than this gain little on a page of about a dozen parts
MAX_WORKERS = 4
ENV_WORKERS = "QF_REPORT_WORKERS"


def default_workers() -> int:
    """Processes :func:`render` uses when not told: the usable cores (at most :data:`MAX_WORKERS`) where
    forking is safe, else 1; ``QF_REPORT_WORKERS`` (a positive integer) overrides the core count.

    Example::

        default_workers()   # 2 on a 2-core Linux machine, 1 while a non-daemon thread runs
    """
    main = threading.main_thread()
    busy = any(t is not main and not t.daemon and t.is_alive() for t in threading.enumerate())
    if not sys.platform.startswith("linux") or threading.current_thread() is not main or busy:
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
            try:
                children.append((*_fork(parts, share), share))
            except OSError as exc:  # no process to be had (EAGAIN, ENOMEM): that share is drawn here
                log.warning("report: could not fork a drawing process (%s); drawing its parts here", exc)
        started = time.monotonic()
        for i in shares[0]:
            results[i] = parts[i]()
        deadline = time.monotonic() + _patience(time.monotonic() - started)
        for _pid, fd, _share in children:
            results.update(_collect(fd, deadline))
    finally:
        for pid, fd, _share in children:
            _reap(pid, fd)
    # what a child raised on or never returned is drawn here: its exception is this process's to raise
    return [results[i] if i in results else parts[i]() for i in range(n)]


def _fork(parts: Sequence[Callable[[], T]], share: list[int]) -> tuple[int, int]:
    read_fd, write_fd = os.pipe()
    try:
        pid = os.fork()
    except OSError:
        os.close(read_fd)
        os.close(write_fd)
        raise
    if pid == 0:  # the child: draw the share, send what succeeded, never return into the parent's code
        code = 1
        try:
            os.close(read_fd)
            die_with_parent()
            _isolate()
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


def _isolate() -> None:
    """Cut a fresh child off what the parent's other threads may hold: the terminal, logging, signals."""
    # Ctrl-C and SIGTERM reach the whole process group: the parent cleans up, the child just ends
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    sink = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the child, which ends with os._exit
    sys.stdout = sys.stderr = sink
    logging.disable(logging.CRITICAL)


# a child gets this long, at least, beyond the time this process took for its own share
MIN_PATIENCE = 30.0


def _patience(own_share_seconds: float) -> float:
    """Seconds to wait for the children once this process has drawn its share (which took about as long
    as theirs should): generous, since a loaded machine may run them much later, but bounded."""
    return MIN_PATIENCE + 10.0 * own_share_seconds


def _collect(fd: int, deadline: float) -> dict[int, T]:
    """A child's results: empty if it died, sent something unreadable, or had not finished at ``deadline``
    (:func:`_reap` then kills it); the pipe is read to its end."""
    chunks = []
    ready = select.poll()  # not select(): it refuses descriptors above 1023, which a busy process may hold
    ready.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
    with contextlib.suppress(OSError):
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not ready.poll(left * 1000.0):
                log.warning("report: a drawing process did not answer in time; its parts are drawn here")
                return {}
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
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
