"""Process helpers shared by the sweep pools and the report's forked renderers.

Example::

    from qf.processes import die_with_parent
    if os.fork() == 0:
        die_with_parent()   # the child never outlives this process, even a SIGKILL of it
"""

from __future__ import annotations

import ctypes
import signal
import sys

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
