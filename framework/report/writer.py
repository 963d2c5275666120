"""Report folders, written atomically: everything goes to a hidden temporary folder next to the
destination, which is renamed into place only once complete. A failed run leaves nothing behind, and a
run killed outright (SIGKILL, power loss) leaves a temporary folder that names its owner process, so the
next run removes it once that process is gone.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import hashlib
import importlib.metadata as md
import json
import math
import os
import re
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from qf.errors import QfError, ReportWriteError

PACKAGES = ("qf", "vectorbt", "backtrader", "numba", "numpy", "pandas", "quantstats", "riskfolio-lib",
            "xgboost", "pluggy", "pydantic", "alpaca-py", "skfolio", "arch")

# every temporary entry qf creates in a report root starts with this (index.scan skips them)
TMP_PREFIX = ".tmp-"
# "...-pid<pid>-<start>": the owner process and its start time (0 where the OS does not tell), so that a
# recycled pid is not mistaken for the owner
_OWNER = re.compile(r"-[0-9a-f]{8}-pid(\d+)-(\d+)$")
# temporary folders of older qf versions (".tmp-<run>-<8 hex>") name no owner: removed from report folders
# once surely abandoned
_LEGACY = re.compile(r"-[0-9a-f]{8}$")
LEGACY_TMP_AGE = 24 * 3600.0


def new_run_id() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)


def _proc_stat(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (state first), or None (no such process)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2:].split()  # the command name may hold spaces and parentheses


def _start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (Linux ``/proc``), or None where unknown."""
    fields = _proc_stat(pid)
    return int(fields[19]) if fields is not None and len(fields) > 19 else None


def process_alive(pid: int, start: int = 0) -> bool:
    """Whether process ``pid`` still runs (and, when ``start`` is known, is the same process).

    Example:
        >>> process_alive(os.getpid(), _start_time(os.getpid()) or 0)
        True
    """
    if Path("/proc/self/stat").exists():
        fields = _proc_stat(pid)
        if fields is None:
            return False
        if fields[0] in ("Z", "X"):  # a killed process not yet reaped by its parent is gone for our purpose
            return False
        return not start or len(fields) <= 19 or int(fields[19]) == start
    if os.name == "nt":  # os.kill(pid, 0) would terminate the process there
        try:
            import psutil
        except ImportError:
            return True  # cannot tell: keep its files
        return bool(psutil.pid_exists(pid))
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def owned_name(stem: str) -> str:
    """A unique temporary name under :data:`TMP_PREFIX` that records this process as its owner.

    Example:
        >>> owned_name("run1").startswith(".tmp-run1-")
        True
    """
    pid = os.getpid()
    return f"{TMP_PREFIX}{stem}-{secrets.token_hex(4)}-pid{pid}-{_start_time(pid) or 0}"


def remove_stale(folder: Path, prefix: str = TMP_PREFIX, legacy: bool = False) -> list[Path]:
    """Delete the temporary entries of ``folder`` whose owner process is gone; returns what was removed.

    Entries are those named ``prefix...`` by :func:`owned_name`; with ``legacy`` (a report folder, where
    only qf writes), also those of older qf versions once a day old.

    Entries of a live process (a concurrent run) are left alone. Errors are ignored: two runs may clean
    the same folder at once, and cleaning up must never fail a run.

    Example::

        remove_stale(Path("reports/hrp_swing"))
    """
    removed: list[Path] = []
    try:
        entries = [p for p in Path(folder).iterdir() if p.name.startswith(prefix)]
    except OSError:
        return removed
    now = time.time()
    for entry in entries:
        owner = _OWNER.search(entry.name)
        try:
            if owner is not None:
                if process_alive(int(owner.group(1)), int(owner.group(2))):
                    continue
            elif not (legacy and _LEGACY.search(entry.name)) or now - entry.lstat().st_mtime < LEGACY_TMP_AGE:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
        except OSError:
            continue
        removed.append(entry)
    return removed


def inside(path: Path, root: Path) -> bool:
    """Whether ``path`` stays inside ``root`` once ``..`` and symlinks are resolved.

    Example:
        >>> inside(Path("reports/x/run1"), Path("reports")), inside(Path("reports/../run1"), Path("reports"))
        (True, False)
    """
    return Path(path).resolve().is_relative_to(Path(root).resolve())


def _cause(exc: OSError) -> str:
    return exc.strerror or str(exc) or type(exc).__name__


def _probe_write(folder: Path) -> None:
    """Create, write and delete a file in ``folder``; raises the OSError that a report would meet.

    A real entry, not ``os.access``: root ignores permission bits, but not a read-only mount or a full disk.
    """
    probe = folder / owned_name("probe")
    fd = os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    try:
        os.write(fd, b"qf")
    finally:
        os.close(fd)
        probe.unlink(missing_ok=True)


def check_output_dir(path: Path, label: str | None = None, must_be_empty: bool = True) -> None:
    """Refuse, before any work is done, a report folder qf could not create (exit code 2).

    ``label`` names where the path came from (e.g. ``--out``). Checks that the folder is missing (or
    empty, with ``must_be_empty``), that no part of the way to it is a file, and that its nearest existing
    parent accepts a new entry (read-only file systems, permissions, a full disk). Creates nothing that
    stays behind.

    Example::

        check_output_dir(Path("/tmp/sma20"), "--out")   # raises QfError naming the path and the cause
    """
    path = Path(path)
    where = f"{label} {path}" if label else str(path)
    try:
        if path.exists():
            if not path.is_dir():
                raise QfError(f"{where}: is a file, not a folder")
            if must_be_empty and any(path.iterdir()):
                raise QfError(f"{where}: the output folder exists and is not empty")
        parent = path if path.exists() else path.parent
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
        if not parent.is_dir():
            raise QfError(f"{where}: {parent} is a file, not a folder")
        _probe_write(parent)
    except OSError as exc:
        raise QfError(f"{where}: cannot write there: {_cause(exc)}") from None


def check_report_target(out: Path | None, root: Path, name: str) -> None:
    """Check where a run will write its report before the run starts (a QfError, exit code 2).

    An explicit ``out`` (``--out``) may be anywhere but must be creatable and empty; the default folder
    ``root/name/<run-id>`` must stay inside ``root`` and be creatable.

    Example::

        check_report_target(None, Path("reports"), "sma_cross")
    """
    if out is not None:
        check_output_dir(Path(out), "--out")
        return
    folder = Path(root) / name
    if not inside(folder, root):
        raise QfError(f"name: {name!r}: its report folder {folder} would be outside the report folder {root}")
    check_output_dir(folder, must_be_empty=False)


@contextlib.contextmanager
def atomic_dir(final: Path, root: Path | None = None) -> Iterator[Path]:
    """Yield a temporary folder; on success it becomes ``final``, on any error it is removed.

    With ``root``, ``final`` must stay inside it. Temporary folders that earlier, killed runs left next to
    ``final`` are removed first. An OSError while writing (a disk that fills up) becomes a
    :class:`~qf.errors.ReportWriteError` naming the folder and the cause.

    Example::

        with atomic_dir(Path("reports/x/run1"), root=Path("reports")) as tmp:
            (tmp / "metrics.json").write_text("{}")
    """
    final = Path(final)
    if root is not None and not inside(final, root):
        raise QfError(f"{final}: is outside the report folder {root}")
    if final.exists() and not final.is_dir():
        raise QfError(f"{final}: is a file, not a folder")
    if final.exists() and any(final.iterdir()):
        raise QfError(f"{final}: the output folder exists and is not empty")
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ReportWriteError(f"{final.parent}: cannot create the report folder: {_cause(exc)}") from None
    remove_stale(final.parent)
    tmp = final.parent / owned_name(final.name)
    try:
        tmp.mkdir()
    except OSError as exc:
        raise ReportWriteError(f"{final}: the report could not be written: {_cause(exc)}") from None
    try:
        yield tmp
        if final.exists():
            final.rmdir()
        os.replace(tmp, final)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if exc.errno in (errno.ENOTEMPTY, errno.EEXIST) and final.exists():  # another run filled it meanwhile
            raise QfError(f"{final}: the output folder exists and is not empty") from None
        name = ""
        if isinstance(exc.filename, str):  # the temporary folder is gone: name a file of it by its place
            inner = Path(exc.filename).is_relative_to(tmp)
            name = f" ({Path(exc.filename).relative_to(tmp) if inner else exc.filename})"
        raise ReportWriteError(f"{final}: the report could not be written{name}: {_cause(exc)}") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def versions() -> dict[str, str]:
    out = {}
    for p in PACKAGES:
        try:
            out[p] = md.version(p)
        except md.PackageNotFoundError:
            continue
    return out


def git_commit(cwd: Path | None = None) -> str | None:
    try:
        res = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, cwd=cwd)
    except (OSError, subprocess.SubprocessError):
        return None
    return res.stdout.strip() or None if res.returncode == 0 else None


def config_hash(config: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()


def data_hash(frames: dict[str, pd.DataFrame]) -> str:
    h = hashlib.sha256()
    for name in sorted(frames):
        df = frames[name]
        h.update(name.encode())
        h.update(df.index.asi8.tobytes())
        h.update(",".join(map(str, df.columns)).encode())
        h.update(df.to_numpy(dtype="float64").tobytes())
    return h.hexdigest()


def _finite(data: Any) -> Any:
    """``data`` with non-finite floats (NaN, inf) as None: JSON has no such numbers, and browsers and jq
    refuse the ``NaN`` literals Python would write."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {k: _finite(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [_finite(v) for v in data]
    if hasattr(data, "item") and callable(data.item) and getattr(data, "ndim", None) == 0:  # numpy scalars
        return _finite(data.item())
    return data


def write_json(path: Path, data: Any) -> None:
    """Strict JSON (non-finite numbers become null), e.g. ``write_json(Path("best.json"), {"psr": nan})``."""
    text = json.dumps(_finite(data), indent=2, sort_keys=False, default=str, allow_nan=False)
    path.write_text(text + "\n", encoding="utf-8")


def write_yaml(path: Path, data: Any) -> None:
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
