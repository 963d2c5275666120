"""Process helpers: a forked child that dies with its parent (sweep pools, the report's forked renderers)
and the ``qf`` command's fast exit.

Example::

    from qf.processes import die_with_parent
    if os.fork() == 0:
        die_with_parent()   # the child never outlives this process, even a SIGKILL of it
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import gc
import io
import os
import signal
import sys
import threading
from typing import NoReturn

# prctl(2) option: the signal the kernel sends this process when its parent dies
_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """On Linux, have the kernel SIGKILL this process when its parent dies (even by SIGKILL); elsewhere
    nothing (callers that need it everywhere add their own check of the parent)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # no libc symbol to call
        pass


def exit_now(code: int | str | None = 0) -> NoReturn:
    """End the process with ``code`` once its exit handlers have run, skipping the interpreter's teardown.

    What ``sys.exit(code)`` does at the end of a command, minus freeing every object one by one: after a
    run that imported vectorbt, scipy and matplotlib that teardown took ~0.9 s of a 7 s ``qf run``; the
    kernel reclaims the memory at once. The ``atexit`` handlers still run (logging's flush, temporary
    folders' finalizers, multiprocessing's children, Ray's shutdown), then every file still open for
    writing is flushed (~0.1 s of the 0.9), stdout and stderr last. A process with another non-daemon
    thread alive exits the ordinary way, which waits for it.

    Example::

        try:
            main()
        except SystemExit as exc:
            exit_now(exc.code)
    """
    others = [t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon]
    if threading.current_thread() is not threading.main_thread() or any(t.is_alive() for t in others):
        sys.exit(code)
    if code is None:
        code = 0
    elif not isinstance(code, int):  # sys.exit("message"): the message on stderr, exit status 1
        with contextlib.suppress(Exception):
            print(code, file=sys.stderr)
        code = 1
    run_handlers = getattr(atexit, "_run_exitfuncs", None)
    if run_handlers is None:  # not CPython: its own shutdown runs them
        sys.exit(code)
    run_handlers()
    _flush_open_files()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # a closed pipe (qf plugins | head) has nothing left to take
            stream.flush()
    os._exit(code)


_FILE_TYPES = (io.BufferedWriter, io.BufferedRandom, io.TextIOWrapper)


def _flush_open_files() -> None:
    """Flush every file object still open for writing: the teardown :func:`exit_now` skips would have
    closed them, and a plugin may keep one open in a global (a trace file) without flushing it."""
    for obj in gc.get_objects():
        if type(obj) in _FILE_TYPES:
            with contextlib.suppress(Exception):  # closed, read-only or a broken pipe: nothing to keep
                if not obj.closed and obj.writable():
                    obj.flush()
