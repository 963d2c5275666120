"""Files qf writes under faults: killed runs, concurrent index rewrites, hostile names, bad --out targets.

Every case asserts the exit code, one line naming the path and the cause, no traceback, and that nothing
half-written is left where the report would have gone.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from qf.cli.main import app
from qf.errors import QfError, ReportWriteError
from qf.report import writer
from qf.report.index import scan, write_index
from qf.report.writer import TMP_PREFIX, atomic_dir, check_output_dir, owned_name, remove_stale

ROOT = Path(__file__).resolve().parents[2]
EXPERIMENT = str(ROOT / "experiments/buy_and_hold.yaml")
SHORT = ["--set", "data.params.start=2021-01-01", "--set", "data.params.end=2021-12-31",
         "--set", "report.tearsheet=false"]
runner = CliRunner()


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def _run(*args: str):
    return runner.invoke(app, ["run", EXPERIMENT, *SHORT, *args])


@pytest.fixture
def no_simulation(monkeypatch):
    """Fail the test if the simulation starts: a bad target must be refused before any work."""
    import qf.runner

    def refuse(*a, **k):
        raise AssertionError("the simulation ran before the output folder was checked")

    monkeypatch.setattr(qf.runner, "run_engine", refuse)


def _fake_run(root: Path, experiment: str, run_id: str) -> None:
    with atomic_dir(root / experiment / run_id, root=root) as tmp:
        writer.write_json(tmp / "metrics.json", {"sharpe": 1.0})
        writer.write_json(tmp / "manifest.json", {"experiment": experiment, "run_id": run_id,
                                                  "created": run_id})


# ------------------------------------------------------------------ 5. a killed sweep leaves no process

SWEEP = """
name: kill_sweep
data: {type: sample, params: {dataset: arch_sp500, start: "2010-01-01", end: "2018-12-31"}}
signal: {type: sma_cross, params: {fast: 20, slow: 100}}
sizer: {type: equal}
execution: {fill: next_open, executor: {kind: KIND, n_jobs: 2}}
sweep:
  params:
    signal.params.fast: {range: [2, 79, 1]}
    signal.params.slow: {range: [80, 300, 5]}
report: {dir: REPORTS, tearsheet: false}
"""


def _children() -> dict[int, list[int]]:
    """Parent pid -> child pids, from /proc."""
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        fields = writer._proc_stat(int(entry.name)) if entry.name.isdigit() else None
        if fields is not None:
            tree.setdefault(int(fields[1]), []).append(int(entry.name))
    return tree


def _descendants(pid: int) -> dict[int, int]:
    """Every live descendant of ``pid`` with its start time (so a recycled pid is not taken for it)."""
    tree, out, todo = _children(), {}, [pid]
    while todo:
        for child in tree.get(todo.pop(), []):
            start = writer._start_time(child)
            if start is not None and writer.process_alive(child, start):
                out[child] = start
                todo.append(child)
    return out


def _ray_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("ray") is not None


# (executor, processes up when the sweep is surely computing): local = the two workers (forked from the warm
# parent on Linux; elsewhere a forkserver and resource tracker too); ray = its head processes, agents, the
# reaper and two workers. The grid is large (3,500 combinations) so that a fast sweep is still running.
EXECUTORS = [
    pytest.param("local", 2, id="local-pool"),
    # with the other Ray tests on one xdist worker (tests/conftest.py, GROUPS)
    pytest.param("ray", 9, id="ray-local", marks=pytest.mark.skipif(not _ray_installed(), reason="ray not installed")),
]


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process tree from /proc")
@pytest.mark.parametrize(("kind", "busy"), EXECUTORS)
def test_sigkill_during_a_sweep_leaves_no_process_alive(tmp_path, kind, busy):
    import time

    exp = tmp_path / "sweep.yaml"
    exp.write_text(SWEEP.replace("REPORTS", str(tmp_path / "reports")).replace("KIND", kind))
    log = (tmp_path / "qf.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "qf.cli.main", "run", str(exp)], stdout=log, stderr=log)
    seen: dict[int, int] = {}
    try:
        deadline = time.monotonic() + 120
        while len(seen) < busy and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
            seen.update(_descendants(proc.pid))
        assert proc.poll() is None, "the sweep ended before it could be killed: " + (tmp_path / "qf.log").read_text()
        assert len(seen) >= busy, seen
        time.sleep(1.0)
        seen.update(_descendants(proc.pid))
    finally:
        proc.kill()
        proc.wait()
        log.close()
    deadline = time.monotonic() + 5
    alive = dict(seen)
    while alive and time.monotonic() < deadline:
        time.sleep(0.1)
        alive = {pid: start for pid, start in alive.items() if writer.process_alive(pid, start)}
    for pid in alive:  # do not leave them for the next test
        os.kill(pid, signal.SIGKILL)
    assert alive == {}, f"{len(alive)} of {len(seen)} descendants still alive 5 s after SIGKILL"
    assert not (tmp_path / "reports").exists() or not any((tmp_path / "reports").rglob("metrics.json"))


def test_a_killed_pool_s_shared_folder_is_removed_by_the_next_pool(tmp_path):
    import numpy as np

    from qf.research.executors import SHARED_PREFIX, LocalExecutor

    stale = tmp_path / f"{SHARED_PREFIX}x1y2-0000abcd-pid999999999-0"
    stale.mkdir()
    (stale / "a0.npy").write_bytes(b"x")
    with LocalExecutor(n_jobs=2, tmp_dir=str(tmp_path)) as ex:
        path = Path(ex._share(np.ones(3)))
        assert path.parent.name.startswith(SHARED_PREFIX) and f"-pid{os.getpid()}-" in path.parent.name
        assert sorted(tmp_path.iterdir()) == [path.parent]
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------ 6. temporary folders of killed runs

# what write_report does, killed between two files: no handler runs, nothing is cleaned up
KILL_WHILE_WRITING = """
import os, signal, sys
from pathlib import Path
from qf.report import writer

final = Path(sys.argv[1])
with writer.atomic_dir(final, root=final.parents[1]) as tmp:
    writer.write_json(tmp / "metrics.json", {"sharpe": 1.0})
    os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_run_killed_while_writing_its_report_is_cleaned_up_by_the_next_run(tmp_path):
    root = tmp_path / "reports"
    final = root / "buy_and_hold" / "20260101-000000-abcdef"
    proc = subprocess.run([sys.executable, "-c", KILL_WHILE_WRITING, str(final)], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    (stale,) = (root / "buy_and_hold").iterdir()
    assert stale.name.startswith(TMP_PREFIX) and (stale / "metrics.json").exists()

    result = _run("--set", f"report.dir={root}")
    assert result.exit_code == 0, result.output
    (run,) = (root / "buy_and_hold").iterdir()
    assert not run.name.startswith(".") and (run / "metrics.json").exists()
    assert [p for p in root.rglob("*") if p.name.startswith(".")] == []


def test_only_temporary_entries_of_dead_owners_are_removed(tmp_path):
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        start = writer._start_time(live.pid) or 0
        mine = tmp_path / owned_name("run-a")  # this process: alive
        theirs = tmp_path / f"{TMP_PREFIX}run-b-0000abcd-pid{live.pid}-{start}"  # another live run
        recycled = tmp_path / f"{TMP_PREFIX}run-c-0000abcd-pid{os.getpid()}-{start + 12345}"  # pid reused since
        dead_pid = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                                  text=True).stdout.strip()
        dead = tmp_path / f"{TMP_PREFIX}run-d-0000abcd-pid{dead_pid}-0"
        dead_file = tmp_path / f"{TMP_PREFIX}index.html-0000abcd-pid{dead_pid}-0"
        legacy_new = tmp_path / f"{TMP_PREFIX}run-e-abcd1234"  # older qf, no owner: kept while recent
        legacy_old = tmp_path / f"{TMP_PREFIX}run-f-abcd1234"
        foreign = tmp_path / f"{TMP_PREFIX}someone-else"  # not qf's: never touched, however old
        report = tmp_path / "20260101-000000-abcdef"
        for d in (mine, theirs, recycled, dead, legacy_new, legacy_old, foreign, report):
            d.mkdir()
            (d / "metrics.json").write_text("{}")
        dead_file.write_text("<html>")
        os.utime(legacy_old, (0, 0))
        os.utime(foreign, (0, 0))
        assert set(remove_stale(tmp_path)) == {recycled, dead, dead_file}  # outside report folders: no legacy
        assert set(remove_stale(tmp_path, legacy=True)) == {legacy_old}
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
            p.name for p in (mine, theirs, legacy_new, foreign, report))
    finally:
        live.kill()
        live.wait()


def test_the_index_rewrite_cleans_every_experiment_folder(tmp_path):
    _fake_run(tmp_path, "a", "r1")
    stale = tmp_path / "b" / f"{TMP_PREFIX}r2-0000abcd-pid999999999-0"
    stale.mkdir(parents=True)
    write_index(tmp_path)
    assert not stale.exists()
    assert [e.run_id for e in scan(tmp_path)] == ["r1"]


# ------------------------------------------------------------------ 7. concurrent index rewrites

WRITER = """
import sys
from pathlib import Path
from qf.report import writer
from qf.report.index import write_index

root, tag, n = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
for i in range(n):
    run_id = f"{tag}-{i:03d}"
    with writer.atomic_dir(root / f"exp_{tag}" / run_id, root=root) as tmp:
        writer.write_json(tmp / "metrics.json", {"sharpe": i})
        writer.write_json(tmp / "manifest.json", {"experiment": f"exp_{tag}", "created": run_id})
    assert write_index(root) is not None
"""


def test_two_processes_rewriting_the_index_lose_nothing(tmp_path):
    n = 40
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), tag, str(n)], stderr=subprocess.PIPE,
                              text=True) for tag in ("a", "b")]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors
    assert not any("Traceback" in e or "warning: " in e for e in errors), errors
    html = (tmp_path / "index.html").read_text()
    for tag in ("a", "b"):
        for i in range(n):
            assert f">{tag}-{i:03d}<" in html
    assert f"{2 * n} run(s)" in html
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exp_a", "exp_b", "index.html"]


def test_an_unwritable_index_after_a_complete_report_is_a_warning(tmp_path):
    (tmp_path / "index.html").mkdir()  # root cannot replace a folder with a file either
    result = _run("--set", f"report.dir={tmp_path}")
    assert result.exit_code == 0, result.output
    assert "warning:" in result.stderr and "index.html" in result.stderr
    assert "Traceback" not in result.output
    (run,) = (tmp_path / "buy_and_hold").iterdir()
    assert (run / "metrics.json").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


# ------------------------------------------------------------------ 8. names and paths inside the report root

@pytest.mark.parametrize("name", ["..", ".", ".hidden", "a/b", "../escape", "a\\\\b", "-rf", "", "x" * 101,
                                  "with space", "tab\\tname", "/abs"])
def test_unsafe_experiment_names_are_refused_with_file_and_line(tmp_path, name, no_simulation):
    src = (ROOT / "experiments/buy_and_hold.yaml").read_text()
    exp = tmp_path / "exp.yaml"
    exp.write_text(src.replace("name: buy_and_hold", f'name: "{name}"'))
    line = src.splitlines().index("name: buy_and_hold") + 1
    reports = tmp_path / "reports"
    result = runner.invoke(app, ["run", str(exp), "--set", f"report.dir={reports}"])
    assert result.exit_code == 2, result.output
    (msg,) = _lines(result.stderr)
    assert msg.startswith(f"error: {exp}:{line}: name:")
    assert "Traceback" not in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exp.yaml"]


def test_an_unsafe_name_from_set_names_the_option(tmp_path, no_simulation):
    result = _run("--set", "name=..", "--set", f"report.dir={tmp_path}")
    assert result.exit_code == 2
    (msg,) = _lines(result.stderr)
    assert msg.startswith("error: --set name=..: name:") and "safe folder name" in msg
    assert list(tmp_path.iterdir()) == []


def test_safe_names_are_accepted():
    import re

    from qf.config.schema import NAME_PATTERN

    for name in ("hrp_swing", "a", "v1.2-final", "A..B"):
        assert re.fullmatch(NAME_PATTERN, name)


def test_an_experiment_folder_linking_outside_the_report_root_is_refused(tmp_path, no_simulation):
    root, outside = tmp_path / "reports", tmp_path / "elsewhere"
    root.mkdir()
    outside.mkdir()
    (root / "buy_and_hold").symlink_to(outside)
    result = _run("--set", f"report.dir={root}")
    assert result.exit_code == 2
    (msg,) = _lines(result.stderr)
    assert "outside the report folder" in msg and str(root) in msg
    assert list(outside.iterdir()) == []


def test_atomic_dir_refuses_a_folder_outside_its_root(tmp_path):
    with pytest.raises(QfError, match="outside the report folder"), \
            atomic_dir(tmp_path / "reports" / ".." / "run1", root=tmp_path / "reports"):
        pass
    assert list(tmp_path.iterdir()) == []


def test_an_explicit_out_may_be_outside_the_report_root(tmp_path):
    out = tmp_path / "elsewhere" / "run"
    result = _run("--set", f"report.dir={tmp_path / 'reports'}", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert (out / "metrics.json").exists()
    assert not (tmp_path / "reports").exists()  # the index of the report root is not touched


# ------------------------------------------------------------------ 9. --out targets

def _prepare(tmp_path: Path, case: str) -> tuple[Path, str]:
    """An --out target for ``case`` and the cause its error must name."""
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    if case == "existing file":
        return blocker, "is a file, not a folder"
    if case == "under a file":
        return blocker / "sub" / "run", f"{blocker} is a file, not a folder"
    if case == "non-empty folder":
        full = tmp_path / "full"
        full.mkdir()
        (full / "keep.txt").write_text("mine")
        return full, "exists and is not empty"
    if case == "read-only folder":
        # sysfs refuses new entries even to root (permission bits would not stop the tests, run as root)
        if not Path("/sys/kernel").is_dir():
            pytest.skip("no /sys")
        return Path("/sys/qf-report"), "cannot write there: Permission denied"
    raise AssertionError(case)


@pytest.mark.parametrize("case", ["existing file", "under a file", "non-empty folder", "read-only folder"])
def test_a_bad_out_is_one_line_exit_2_before_the_run(tmp_path, case, no_simulation):
    out, cause = _prepare(tmp_path, case)
    before = sorted(tmp_path.rglob("*"))
    result = _run("--out", str(out), "--set", f"report.dir={tmp_path / 'reports'}")
    assert result.exit_code == 2, result.output
    (msg,) = _lines(result.stderr)
    assert msg.startswith(f"error: --out {out}: ") and cause in msg
    assert "Traceback" not in result.output
    assert sorted(tmp_path.rglob("*")) == before


def test_a_read_only_mount_is_one_line_exit_2_before_the_run(tmp_path, no_simulation):
    ro = tmp_path / "ro"
    ro.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(ro)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip("cannot mount a read-only file system here")
    try:
        result = _run("--out", str(ro / "run"))
    finally:
        subprocess.run(["umount", str(ro)], check=True)
    assert result.exit_code == 2, result.output
    assert _lines(result.stderr) == [f"error: --out {ro / 'run'}: cannot write there: Read-only file system"]


def test_a_full_disk_found_before_the_run_is_exit_2(tmp_path, monkeypatch, no_simulation):
    def full(folder):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(writer, "_probe_write", full)
    result = _run("--out", str(tmp_path / "run"))
    assert result.exit_code == 2
    (msg,) = _lines(result.stderr)
    assert msg == f"error: --out {tmp_path / 'run'}: cannot write there: No space left on device"
    assert list(tmp_path.iterdir()) == []


def test_a_disk_that_fills_while_the_report_is_written_is_exit_1(tmp_path, monkeypatch):
    real = writer.write_json

    def fill_up(path, data):
        if path.name == "manifest.json":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        real(path, data)

    monkeypatch.setattr(writer, "write_json", fill_up)
    out = tmp_path / "out" / "run"
    result = _run("--out", str(out))
    assert result.exit_code == 1, result.output
    (msg,) = _lines(result.stderr)
    assert msg == f"error: {out}: the report could not be written (manifest.json): No space left on device"
    assert "Traceback" not in result.output
    assert list((tmp_path / "out").iterdir()) == []


def test_a_storage_error_outside_the_report_writer_is_one_line_exit_1(tmp_path, monkeypatch, capsys):
    # e.g. a sweep's shared arrays on a full /tmp: main() turns the OSError into one line
    import qf.runner
    from qf.cli.main import main

    def full(*a, **k):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/tmp/qf-shared-1/a0.npy")

    monkeypatch.setattr(qf.runner, "run_engine", full)
    monkeypatch.setattr(sys, "argv", ["qf", "run", EXPERIMENT, *SHORT, "--out", str(tmp_path / "run")])
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code == 1
    assert _lines(capsys.readouterr().err) == ["error: /tmp/qf-shared-1/a0.npy: No space left on device"]
    assert list(tmp_path.iterdir()) == []


def test_check_output_dir_accepts_an_empty_or_missing_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    check_output_dir(tmp_path / "empty", "--out")
    check_output_dir(tmp_path / "new" / "deeper", "--out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]


def test_report_write_error_exit_code():
    assert ReportWriteError("x").exit_code == 1 and QfError("x").exit_code == 2


def test_a_run_folder_with_garbage_metrics_is_skipped_by_the_index(tmp_path):
    _fake_run(tmp_path, "a", "r1")
    bad = tmp_path / "a" / "r2"
    bad.mkdir()
    (bad / "metrics.json").write_bytes(b"\xff\xfe\x00garbage")
    listy = tmp_path / "a" / "r3"
    listy.mkdir()
    (listy / "metrics.json").write_text(json.dumps([1, 2]))
    assert write_index(tmp_path) == tmp_path / "index.html"
    assert [e.run_id for e in scan(tmp_path)] == ["r1"]
