"""qf.processes.exit_now and the ``qf`` command's end: exit handlers run, output arrives, status is kept."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _python(code: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60)


@pytest.mark.parametrize(("code", "status", "stderr"), [(0, 0, ""), (None, 0, ""), (3, 3, ""),
                                                        ("'went wrong'", 1, "went wrong\n")])
def test_exit_handlers_run_and_buffered_output_arrives(tmp_path, code, status, stderr):
    res = _python(f"""
        import atexit, sys, tempfile, weakref
        from pathlib import Path
        from qf.processes import exit_now
        atexit.register(lambda: Path("handler-ran").write_text("yes"))
        folder = tempfile.TemporaryDirectory(dir=".")  # removed by its finalizer at exit
        Path("folder").write_text(folder.name)
        sys.stdout.write("x" * 100_000)  # more than a pipe buffer, still in Python's buffer
        exit_now({code})
        """, tmp_path)
    assert res.returncode == status
    assert res.stdout == "x" * 100_000
    assert res.stderr == stderr
    assert (tmp_path / "handler-ran").read_text() == "yes"
    assert not Path((tmp_path / "folder").read_text()).exists()


def test_files_left_open_are_flushed(tmp_path):
    # a plugin's trace file kept in a global and never closed: the skipped teardown would have flushed it
    res = _python("""
        import qf.processes
        TRACE = open("trace.txt", "w")
        TRACE.write("line\\n" * 1000)
        BIN = open("trace.bin", "wb")
        BIN.write(b"x" * 100)
        qf.processes.exit_now(0)
        """, tmp_path)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "trace.txt").read_text() == "line\n" * 1000
    assert (tmp_path / "trace.bin").read_bytes() == b"x" * 100


def test_a_live_non_daemon_thread_is_waited_for(tmp_path):
    res = _python("""
        import threading, time
        from pathlib import Path
        from qf.processes import exit_now
        def work():
            time.sleep(0.5)
            Path("thread-finished").write_text("yes")
        threading.Thread(target=work).start()
        exit_now(4)
        """, tmp_path)
    assert res.returncode == 4
    assert (tmp_path / "thread-finished").read_text() == "yes"


def test_the_qf_command_keeps_its_output_and_exit_codes(tmp_path):
    ok = subprocess.run([sys.executable, "-m", "qf.cli.main", "plugins"], cwd=ROOT, capture_output=True,
                        text=True, timeout=120)
    assert ok.returncode == 0 and "sizer" in ok.stdout and ok.stderr == ""
    bad = subprocess.run([sys.executable, "-m", "qf.cli.main", "run", str(tmp_path / "missing.yaml")], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2
    assert bad.stderr.strip() == f"error: {tmp_path / 'missing.yaml'}: no such file"


def test_a_closed_pipe_ends_the_command_quietly():
    proc = subprocess.Popen(f"{sys.executable} -m qf.cli.main plugins | head -c 10", shell=True, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = proc.communicate(timeout=120)
    assert len(out) == 10
    assert "Traceback" not in err
