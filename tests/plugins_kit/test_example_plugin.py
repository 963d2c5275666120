"""examples/qf-example-plugin, installed and used exactly like a third-party plugin.

The package is built and installed into a scratch folder (pip ``--target``; the test environment is not
touched), and fresh processes that see it through ``PYTHONPATH`` run ``qf plugins``, ``qf validate``,
``qf run`` and the package's own tests. Nothing here imports the example: only its installed entry point
can make ``risk_parity_lite`` appear, so a packaging mistake fails these tests.

The run is short (18 months of data, small windows, no tear sheet) and starts in the background first,
because its vectorbt compilation dominates the module's time.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import yaml

EXPERIMENT = "experiments/risk_parity_lite.yaml"
SHORT = ["--set", "data.params.start=2021-06-01", "--set", "sizer.params.window=40",
         "--set", "signal.params.lookback=60", "--set", "signal.params.skip=5",
         "--set", "report.tearsheet=false"]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory, kit: SimpleNamespace) -> SimpleNamespace:
    root = tmp_path_factory.mktemp("example_plugin")
    project = kit.copy_project(kit.root / "examples" / "qf-example-plugin", root / "qf-example-plugin")
    target = root / "site-packages"
    kit.pip_install([project], target)
    assert (target / "qf_example_plugin-0.2.0.dist-info" / "entry_points.txt").read_text().split() == [
        "[qf]", "qf_example", "=", "qf_example_plugin"
    ]
    return SimpleNamespace(root=root, project=project, target=target, env=kit.env_with(target))


@pytest.fixture(scope="module")
def background_run(installed: SimpleNamespace, kit: SimpleNamespace) -> Iterator[SimpleNamespace]:
    out = installed.root / "report"
    proc = subprocess.Popen([*kit.qf, "run", str(installed.project / EXPERIMENT), *SHORT, "--out", str(out)],
                            cwd=installed.root, env=installed.env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        yield SimpleNamespace(proc=proc, out=out)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def test_qf_plugins_lists_the_component_with_its_version(installed, background_run, kit):
    res = kit.run([*kit.qf, "plugins"], installed.root, installed.env)
    assert res.returncode == 0, res.stderr
    rows = [line for line in res.stdout.splitlines() if "risk_parity_lite" in line]
    assert len(rows) == 1, res.stdout
    cells = [c.strip() for c in rows[0].strip("│| ").split("│")]
    assert cells == ["sizer", "risk_parity_lite", "qf_example", "0.2.0", "qf_example_plugin.risk_parity.RiskParityLite"]
    assert "hrp" in res.stdout  # the built-ins are still there


def test_qf_validate_accepts_the_experiment_and_knows_the_name(installed, background_run, kit):
    res = kit.run([*kit.qf, "validate", str(installed.project / EXPERIMENT)], installed.root, installed.env)
    assert (res.returncode, res.stdout.strip()) == (0, "ok"), res.stderr
    typo = installed.root / "typo.yaml"
    text = (installed.project / EXPERIMENT).read_text()
    typo.write_text(text.replace("type: risk_parity_lite", "type: risk_parity_lit"))
    line = next(i for i, s in enumerate(text.splitlines(), 1) if "type: risk_parity_lite" in s)
    res = kit.run([*kit.qf, "validate", str(typo), "--set", "sizer.params.windw=5"], installed.root, installed.env)
    assert res.returncode == 2
    assert f"typo.yaml:{line}: sizer.type: 'risk_parity_lit' is not an installed sizer; did you mean " \
           "'risk_parity_lite'?" in " ".join(res.stderr.split())


def test_the_package_own_tests_pass_against_the_installed_copy(installed, background_run, kit):
    import sys

    res = kit.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], installed.project, installed.env)
    expected = (installed.project / "tests" / "test_risk_parity_lite.py").read_text().count("\ndef test_")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    assert f"{expected} passed" in res.stdout, res.stdout[-2000:]


def test_qf_run_writes_a_report_sized_by_the_plugin(background_run):
    try:
        stdout, stderr = background_run.proc.communicate(timeout=400)
    except subprocess.TimeoutExpired:
        background_run.proc.kill()
        pytest.fail("qf run of the example experiment took more than 400 s")
    assert background_run.proc.returncode == 0, stderr[-3000:]
    out: Path = background_run.out
    assert f"report: {out}" in " ".join(stdout.split())
    assert sorted(p.name for p in out.iterdir()) == ["config.yaml", "equity.parquet", "manifest.json", "metrics.json",
                                                     "orders.csv", "risk_events.csv", "trades.csv", "weights.parquet"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_orders"] > 0 and metrics["final_equity"] > 0
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["sizer"] == {"type": "risk_parity_lite", "params": {"window": 40, "gross": 1.0}}
    targets = pd.read_parquet(out / "weights.parquet")
    invested = targets[targets.sum(axis=1) > 0]
    assert len(invested) >= 6
    assert (targets.to_numpy() <= 0.25 + 1e-9).all()  # max_weight ran after the sizer
    # equal risk, not equal weight: the held names get visibly different weights
    spread = invested.where(invested > 0).max(axis=1) - invested.where(invested > 0).min(axis=1)
    assert spread.max() > 0.02
