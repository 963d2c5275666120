"""`qf run` stopped while forked children draw its tear sheet: SIGTERM stops it cleanly (exit 143, no report, no
temporary folder, no child left), SIGKILL takes the children with it (the kernel's parent-death signal)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from qf.report.writer import process_alive
from qf.testing.waiting import signal_when, wait_for

EXPERIMENT = """
name: stopped
data: {type: sample, params: {dataset: sp500_20, start: 2010-01-01}}
signal: {type: sma_cross, params: {fast: 20, slow: 100}}
sizer: {type: equal}
execution: {fill: next_close}
report: {dir: reports}
"""

pytestmark = pytest.mark.skipif(not Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children").exists(),
                                reason="needs Linux /proc/<pid>/task/<tid>/children")


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:  # the process is gone
        return []


def _start(tmp_path: Path) -> subprocess.Popen[str]:
    (tmp_path / "exp.yaml").write_text(EXPERIMENT)
    env = {**os.environ, "COLUMNS": "200", "QF_REPORT_WORKERS": "2"}
    return subprocess.Popen([sys.executable, "-m", "qf.cli.main", "run", "exp.yaml"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _signal_while_drawing(tmp_path: Path, sig: int) -> tuple[subprocess.Popen[str], list[int], str, str]:
    """Start qf run, send ``sig`` once it has forked children (its tear sheet's), return the process, the
    children's pids and its output."""
    proc = _start(tmp_path)
    seen: list[int] = []

    def drawing() -> bool:
        seen[:] = _children(proc.pid)
        return bool(seen)

    out, err = signal_when(proc, drawing, sig, what="the run never forked its tear sheet's children")
    return proc, seen, out, err


def test_sigterm_while_the_tear_sheet_is_drawn_in_children(tmp_path):
    proc, seen, out, err = _signal_while_drawing(tmp_path, signal.SIGTERM)
    assert proc.returncode == 143, (out, err)
    assert "terminated (SIGTERM)" in err and "Traceback" not in err
    assert not [pid for pid in seen if process_alive(pid)]
    left = [p.name for p in (tmp_path / "reports").rglob("*")] if (tmp_path / "reports").exists() else []
    assert [n for n in left if n.startswith(".tmp-") or n.endswith((".html", ".json"))] == []


def test_sigkill_while_the_tear_sheet_is_drawn_takes_the_children_along(tmp_path):
    proc, seen, _, _ = _signal_while_drawing(tmp_path, signal.SIGKILL)
    assert proc.returncode == -signal.SIGKILL
    # orphans are re-parented (to init or a subreaper) and reaped there; a live one would still be drawing
    wait_for(lambda: not [pid for pid in seen if process_alive(pid)], timeout=10)
