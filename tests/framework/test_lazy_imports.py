"""Listing commands load no heavy library: each runs in a fresh interpreter and its sys.modules is inspected.

vectorbt, riskfolio, quantstats, xgboost, backtrader and alpaca cost seconds to import, numba (which
imports scipy) a few hundred milliseconds; ``qf plugins``, ``qf validate``, ``qf schema`` and
``qf report list`` need none of them. Only what is loaded is asserted, never a timing.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("vectorbt", "riskfolio", "quantstats", "xgboost", "backtrader", "alpaca", "numba", "sklearn", "plotly")

PROBE = """
import json, sys
from qf.cli.main import main
watched = set(json.loads(sys.argv[2]))
sys.argv = ["qf", *json.loads(sys.argv[1])]
code = 0
try:
    main()
except SystemExit as exc:
    code = exc.code or 0
heavy = sorted({name.split(".")[0] for name in sys.modules} & watched)
print("\\nPROBE " + json.dumps({"code": code, "heavy": heavy}))
"""


def _loaded_by(args: list[str]) -> tuple[int, list[str], str]:
    res = subprocess.run([sys.executable, "-c", PROBE, json.dumps(args), json.dumps(HEAVY)], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    line = [ln for ln in res.stdout.splitlines() if ln.startswith("PROBE ")]
    assert line, res.stdout + res.stderr
    probe = json.loads(line[-1][len("PROBE "):])
    return probe["code"], probe["heavy"], res.stdout


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # one finished run, so `qf report list` formats a row rather than printing "no runs"
    root = tmp_path_factory.mktemp("reports")
    run = root / "hrp_swing" / "20240101-000000-abcd"
    run.mkdir(parents=True)
    (run / "metrics.json").write_text(json.dumps({"total_return": 0.5, "sharpe": 1.2, "max_drawdown": -0.1}))
    (run / "manifest.json").write_text(json.dumps({"experiment": "hrp_swing", "created": "2024-01-01 00:00:00",
                                                   "engine": "vectorbt", "kind": "backtest"}))
    return root


@pytest.mark.parametrize("args", [
    ["plugins"],
    ["validate", "experiments/hrp_swing.yaml"],
    ["validate", "experiments/sma_cross.yaml"],
    ["schema"],
    ["report", "list", "--root", "{reports}"],
], ids=["plugins", "validate-hrp_swing", "validate-sma_cross", "schema", "report-list"])
def test_listing_commands_import_nothing_heavy(args: list[str], reports: Path) -> None:
    code, heavy, out = _loaded_by([a.format(reports=reports) for a in args])
    assert code == 0, out
    assert heavy == [], f"qf {' '.join(args)} imported {heavy}"
    if args[0] == "report":
        assert "hrp_swing" in out  # the run was really listed


def test_the_probe_sees_a_heavy_import() -> None:
    # the look-ahead check runs the signal, whose indicators are numba kernels: the probe must see numba, or
    # the test above proves nothing (sample data no longer imports skfolio, so `qf data show` loads nothing heavy)
    code, heavy, out = _loaded_by(["validate", "--lookahead", "experiments/sma_cross.yaml"])
    assert code == 0, out
    assert "numba" in heavy
    code, heavy, out = _loaded_by(["data", "show", "--source", "sample", "--dataset", "sp500_20"])
    assert code == 0 and heavy == [], (heavy, out)
