"""The local-file strategy example of docs/plugins.md ("How names resolve") is the repository's own
strategies/vol_trend.py, run by experiments/local_plugin.yaml: the page shows these files verbatim, the
strategy keeps the signal contracts, and ``qf run`` runs the experiment offline on the sample data.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from qf.cli.main import app
from qf.config.loader import load_experiment
from qf.registry import get_registry
from qf.testing import check_signal

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "plugins.md"
FILES = ["strategies/vol_trend.py", "experiments/local_plugin.yaml"]


def doc_block(rel: str) -> str:
    """The fenced block of docs/plugins.md whose first line is ``# <rel>``."""
    found = [body for body in re.findall(r"^```\w*\n(.*?)^```$", DOC.read_text(), flags=re.M | re.S)
             if body.split("\n", 1)[0] == f"# {rel}"]
    assert len(found) == 1, f"docs/plugins.md shows {len(found)} blocks for {rel}"
    return found[0]


@pytest.mark.parametrize("rel", FILES)
def test_the_docs_show_the_file_verbatim(rel):
    assert doc_block(rel) == (ROOT / rel).read_text(), f"docs/plugins.md and {rel} differ: update both together"


def test_the_strategy_is_a_sound_signal_model():
    exp = load_experiment(ROOT / "experiments/local_plugin.yaml", ["data.params.start=2019-01-01"])
    reg = get_registry().get("signal", "strategies/vol_trend.py:VolTrend", base_dir=ROOT / "experiments")
    assert (reg.name, reg.provider) == ("vol_trend", "local") and type(exp.signal) is reg.cls
    bars = exp.data.load()
    # scores in [-1, 1], NaN only in the warm-up, no look-ahead, and the live path's history is enough
    signal = check_signal(exp.signal, bars, warmup="raise")
    # one row by hand: sign of the 60-bar return times min(1, 1% / the 60-bar volatility of daily returns)
    t, sym = 200, "MSFT"
    close = bars.close[sym].to_numpy()
    rets = close[t - 59:t + 1] / close[t - 60:t] - 1
    expected = np.sign(close[t] / close[t - 60] - 1) * min(1.0, 0.01 / rets.std(ddof=1))
    assert signal[sym].iloc[t] == pytest.approx(expected, rel=1e-12)
    assert signal.iloc[:60].isna().all().all() and signal.iloc[60:].notna().all().all()


def test_qf_run_runs_the_local_strategy_offline(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # found through the experiment folder's parent, not the working directory
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["run", str(ROOT / "experiments/local_plugin.yaml"), "--out", str(out),
                                      "--set", "data.params.start=2020-06-01", "--set", "report.tearsheet=false"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["components"]["signal"]["type"] == "vol_trend"
    assert manifest["data"]["source"] == "sample:sp500_20"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_orders"] > 0 and metrics["final_equity"] > 0
