"""Report folders, written atomically: everything goes to a hidden temporary folder next to the
destination, which is renamed into place only once complete. A failed run leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import importlib.metadata as md
import json
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

PACKAGES = ("qf", "vectorbt", "backtrader", "numba", "numpy", "pandas", "quantstats", "riskfolio-lib",
            "xgboost", "pluggy", "pydantic", "alpaca-py", "skfolio", "arch")


def new_run_id() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)


@contextlib.contextmanager
def atomic_dir(final: Path) -> Iterator[Path]:
    """Yield a temporary folder; on success it becomes ``final``, on any error it is removed.

    Example::

        with atomic_dir(Path("reports/x/run1")) as tmp:
            (tmp / "metrics.json").write_text("{}")
    """
    final = Path(final)
    if final.exists() and any(final.iterdir()):
        from qf.errors import QfError

        raise QfError(f"{final}: the output folder exists and is not empty")
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".tmp-{final.name}-{secrets.token_hex(4)}"
    tmp.mkdir()
    try:
        yield tmp
        if final.exists():
            final.rmdir()
        os.replace(tmp, final)
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


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n", encoding="utf-8")


def write_yaml(path: Path, data: Any) -> None:
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
