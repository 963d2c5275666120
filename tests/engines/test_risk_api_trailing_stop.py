"""examples/qf-trailing-stop, a third party's stateful risk rule, installed and used like any plugin.

The package is built and installed into a scratch folder (pip ``--target``, offline; the test environment is
not touched) and fresh ``qf`` processes that see it through ``PYTHONPATH`` run it, exactly as the example
plugin's tests do (tests/plugins_kit/test_example_plugin.py). Nothing here imports the package: only its
installed entry point can make ``trailing_stop`` appear. The proof asked of the public stateful-rule API:

- ``qf parity`` (vectorbt against backtrader) agrees to 1e-9 on an experiment where the stop fires;
- a ``--broker sim`` paper replay places the backtest's orders, stops included;
- the package's own tests pass against the installed copy.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[2]
PROJECT = ROOT / "examples" / "qf-trailing-stop"
EXPERIMENT = "experiments/trailing_stop.yaml"
NO_TEARSHEET = ["--set", "report.tearsheet=false"]


def _qf() -> list[str]:
    script = Path(sys.executable).with_name("qf")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "qf.cli.main"]


def _run(cmd: Sequence[str], cwd: Path, env: dict[str, str], timeout: float = 400) -> subprocess.CompletedProcess:
    return subprocess.run(list(cmd), cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    root = tmp_path_factory.mktemp("trailing_stop")
    project = root / "qf-trailing-stop"
    # a clean copy: building in place would leave build/ and *.egg-info folders in the repository
    shutil.copytree(PROJECT, project, ignore=shutil.ignore_patterns("__pycache__", "build", "*.egg-info",
                                                                     ".pytest_cache", "reports"))
    target = root / "site-packages"
    cmd = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
           "--disable-pip-version-check", "-q", "--target", str(target), str(project)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=root)
    assert res.returncode == 0, res.stdout + res.stderr
    assert (target / "qf_trailing_stop-0.1.0.dist-info" / "entry_points.txt").read_text().split() == [
        "[qf]", "qf_trailing_stop", "=", "qf_trailing_stop"]
    # qf's own plugin switches are dropped so that an outer QF_PLUGINS_BLOCK cannot hide the plugin under test
    env = {k: v for k, v in os.environ.items() if not k.startswith("QF_") and k != "PYTEST_ADDOPTS"}
    env["PYTHONPATH"] = os.pathsep.join([str(target), *filter(None, [os.environ.get("PYTHONPATH")])])
    return SimpleNamespace(root=root, project=project, target=target, env=env)


@pytest.fixture(scope="module")
def backtests(installed: SimpleNamespace) -> dict[str, Path]:
    """``qf run`` of the experiment in each engine (reports kept for the assertions)."""
    out = {}
    for engine in ("vectorbt", "backtrader"):
        folder = installed.root / f"run-{engine}"
        res = _run([*_qf(), "run", str(installed.project / EXPERIMENT), "--set", f"execution.engine={engine}",
                    *NO_TEARSHEET, "--out", str(folder)], installed.root, installed.env)
        assert res.returncode == 0, res.stderr[-3000:]
        out[engine] = folder
    return out


def _orders(folder: Path) -> pd.DataFrame:
    return pd.read_csv(folder / "orders.csv", parse_dates=["time"])


def test_qf_plugins_lists_the_rule(installed):
    res = _run([*_qf(), "plugins"], installed.root, installed.env)
    assert res.returncode == 0, res.stderr
    rows = [line for line in res.stdout.splitlines() if "trailing_stop" in line]
    assert len(rows) == 1, res.stdout
    cells = [c.strip() for c in rows[0].strip("│| ").split("│")]
    assert cells == ["risk rule", "trailing_stop", "qf_trailing_stop", "0.1.0", "qf_trailing_stop.rule.TrailingStop"]


def test_the_stop_fires_and_both_engines_agree(installed, backtests):
    # the stop did act: positions closed by the rule on many bars, in both engines alike
    events = {e: pd.read_csv(f / "risk_events.csv") for e, f in backtests.items()}
    stops = events["vectorbt"][events["vectorbt"]["event"] == "stop"]
    assert len(stops) > 20 and stops["symbol"].nunique() > 5
    pd.testing.assert_frame_equal(events["vectorbt"], events["backtrader"])
    a, b = _orders(backtests["vectorbt"]), _orders(backtests["backtrader"])
    assert len(a) == len(b) > 100
    pd.testing.assert_frame_equal(a[["time", "symbol", "side"]], b[["time", "symbol", "side"]])
    # as qf parity measures orders: traded value and fees against the account (initial cash 100,000), since a
    # rebalance's dust order of 0.005 units carries the rounding of the account's whole value
    np.testing.assert_allclose(a["price"], b["price"], rtol=1e-9, atol=0)
    for x, y in ((a["quantity"] * a["price"], b["quantity"] * b["price"]), (a["fee"], b["fee"])):
        np.testing.assert_allclose(x.to_numpy(), y.to_numpy(), rtol=0, atol=1e-9 * 100_000)
    # qf parity says the same at 1e-9 (exit 0), risk events included
    res = _run([*_qf(), "parity", str(installed.project / EXPERIMENT), "--tolerance", "1e-9"], installed.root,
               installed.env)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    text = " ".join(res.stdout.split())
    assert "the engines agree" in text
    assert f"risk events │ {len(events['vectorbt'])} │ {len(events['vectorbt'])} │" in text


def test_a_sim_paper_replay_places_the_backtests_orders(installed, backtests):
    state, reports = installed.root / "paper-state", installed.root / "paper-reports"
    res = _run([*_qf(), "paper", str(installed.project / EXPERIMENT), "--broker", "sim", "--state-dir", str(state),
                "--set", f"report.dir={reports}", *NO_TEARSHEET], installed.root, installed.env)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    [report] = [p.parent for p in reports.rglob("orders.csv")]
    got = _orders(report)
    events = pd.read_csv(report / "risk_events.csv")
    start = pd.read_parquet(report / "equity.parquet").index[0]
    # the replay decides from its first bar after the warm-up; the backtest traded nothing before it
    want = _orders(backtests["backtrader"])
    assert (want["time"] >= start).all()
    assert len(got) == len(want) > 100
    pd.testing.assert_frame_equal(got[["time", "symbol", "side"]], want[["time", "symbol", "side"]])
    for col in ("quantity", "price", "fee"):
        np.testing.assert_allclose(got[col].to_numpy(), want[col].to_numpy(), rtol=1e-12, atol=0)
    want_events = pd.read_csv(backtests["backtrader"] / "risk_events.csv")
    assert (events["event"] == "stop").sum() == (want_events["event"] == "stop").sum() > 20


def test_the_package_own_tests_pass_against_the_installed_copy(installed):
    res = _run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], installed.project, installed.env)
    expected = (installed.project / "tests" / "test_trailing_stop.py").read_text().count("\ndef test_")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    assert f"{expected} passed" in res.stdout, res.stdout[-2000:]
