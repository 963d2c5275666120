"""The go/no-go gate (qf.report.gate, ``qf report gate``, ``qf paper --gate``): criteria on hand-built reports,
the tracking error by hand, exit codes 0 / 3 / 2, and a replayed session gated against its backtest."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from qf.cli.main import app
from qf.config.schema import GateSpec
from qf.engines.result import EngineResult
from qf.errors import ConfigError
from qf.report.gate import evaluate_gate, load_gate, tracking_error, write_gate
from qf.report.metrics import compute_metrics

runner = CliRunner()
ORDERS = ["time", "symbol", "side", "quantity", "price", "fee"]


def _equity(seed: int, n: int = 120, vol: float = 0.01) -> pd.Series:
    rng = np.random.default_rng(seed)
    idx = pd.bdate_range("2021-01-04", periods=n)
    return pd.Series(100_000 * np.cumprod(1 + rng.normal(0.0005, vol, n)), index=idx, name="equity")


def _report(folder: Path, equity: pd.Series, trades: dict, config: dict | None = None) -> Path:
    """A report folder whose metrics.json is compute_metrics' (plus a trades summary), as qf writes it."""
    folder.mkdir(parents=True)
    result = EngineResult("backtrader", equity, pd.DataFrame(columns=ORDERS), pd.DataFrame(columns=["time", "event",
                                                                                                  "symbol"]), {})
    metrics = compute_metrics(result, 100_000.0, eval_start=equity.index[5])
    metrics["trades"] = trades
    (folder / "metrics.json").write_text(json.dumps(metrics))
    equity.to_frame("equity").to_parquet(folder / "equity.parquet")
    if config is not None:
        (folder / "config.yaml").write_text(yaml.safe_dump(config))
    return folder


def test_criteria_use_the_report_figures(tmp_path: Path) -> None:
    eq = _equity(1)
    folder = _report(tmp_path / "r", eq, {"n_closed": 25, "win_rate": 0.6})
    metrics = json.loads((folder / "metrics.json").read_text())
    vol, dd = metrics["volatility"], metrics["max_drawdown"]
    go = evaluate_gate(folder, GateSpec(min_trades=20, min_win_rate=0.55, max_drawdown=-dd + 0.01, min_bars=100,
                                        volatility={"target": vol + 0.01, "tolerance": 0.02}))
    assert go.verdict == "GO" and go.exit_code == 0
    values = {c.name: c.value for c in go.criteria}
    assert values == {"evaluated bars": 115, "closed trades": 25, "win rate": 0.6, "max drawdown": dd,
                      "volatility": vol}
    no = evaluate_gate(folder, GateSpec(min_trades=26, min_win_rate=0.6, max_drawdown=-dd - 0.001,
                                        volatility={"target": vol + 0.021, "tolerance": 0.02}))
    assert no.verdict == "NO-GO" and no.exit_code == 3
    assert [c.passed for c in no.criteria] == [False, True, False, False]
    # no closed trade: the win rate is undefined and fails (never a GO by default)
    empty = _report(tmp_path / "e", eq, {"n_closed": 0, "win_rate": None})
    assert not evaluate_gate(empty, GateSpec(min_win_rate=0.5)).go
    page = write_gate(folder, no)
    assert "NO-GO" in page.read_text() and json.loads((folder / "gate.json").read_text())["go"] is False


def test_tracking_error_and_backtest_volatility_by_hand(tmp_path: Path) -> None:
    paper = _equity(2)
    backtest = _equity(3, n=260).set_axis(pd.bdate_range("2020-09-01", periods=260))
    folder = _report(tmp_path / "p", paper, {"n_closed": 3, "win_rate": 0.5})
    first = paper.index[5]
    p_ret = paper.pct_change().loc[first:]
    b_ret = backtest.pct_change().loc[first:paper.index[-1]]
    diff = (p_ret - b_ret).dropna()
    by_hand = float(np.std(diff.to_numpy(), ddof=1) * math.sqrt(252))
    te, n = tracking_error(p_ret, b_ret, 252)
    assert te == pytest.approx(by_hand, rel=1e-12) and n == len(diff) == 115
    bt_vol = float(np.std(b_ret.to_numpy(), ddof=1) * math.sqrt(252))
    result = evaluate_gate(folder, GateSpec(max_tracking_error=by_hand + 1e-9,
                                            volatility={"target": "backtest", "tolerance": 1.0}),
                           (backtest, 100_000.0), "bt")
    crit = {c.name: c for c in result.criteria}
    assert crit["tracking error to the backtest replay"].value == pytest.approx(by_hand, rel=1e-12)
    assert crit["tracking error to the backtest replay"].passed
    assert f"backtest {bt_vol:.2%}" in crit["volatility"].threshold
    short = backtest.loc[:paper.index[20]]
    with pytest.raises(Exception, match="does not cover"):
        evaluate_gate(folder, GateSpec(max_tracking_error=1.0), (short.loc[paper.index[10]:], 1e5))


def test_gate_files(tmp_path: Path) -> None:
    (tmp_path / "g.yaml").write_text("gate:\n  min_trades: 20\n  min_win_rate: 0.55\n")
    assert load_gate(tmp_path / "g.yaml").min_trades == 20
    (tmp_path / "bad.yaml").write_text("min_trades: 20\nmin_win_rate: 1.5\n")
    with pytest.raises(ConfigError, match=r"bad.yaml:2: min_win_rate: Input should be less than or equal to 1"):
        load_gate(tmp_path / "bad.yaml")
    (tmp_path / "empty.yaml").write_text("{}\n")
    with pytest.raises(ConfigError, match="at least one criterion"):
        load_gate(tmp_path / "empty.yaml")
    with pytest.raises(ConfigError, match="gate file not found"):
        load_gate(tmp_path / "missing.yaml")


def test_report_gate_exit_codes(tmp_path: Path) -> None:
    folder = _report(tmp_path / "r", _equity(4), {"n_closed": 25, "win_rate": 0.6},
                     config={"gate": {"min_trades": 20}})
    (tmp_path / "go.yaml").write_text("min_trades: 20\nmin_win_rate: 0.55\n")
    (tmp_path / "no.yaml").write_text("min_trades: 30\n")
    (tmp_path / "bad.yaml").write_text("min_trades: [1\n")
    go = runner.invoke(app, ["report", "gate", str(folder), "--gate", str(tmp_path / "go.yaml")])
    assert go.exit_code == 0, go.output
    assert "GO" in go.output and "pass  win rate: 60.00% of 25 closed trades (needs >= 55.00%)" in go.output
    no = runner.invoke(app, ["report", "gate", str(folder), "--gate", str(tmp_path / "no.yaml")])
    assert no.exit_code == 3 and "NO-GO" in no.output and "FAIL  closed trades: 25 (needs >= 30)" in no.output
    assert json.loads((folder / "gate.json").read_text())["verdict"] == "NO-GO"
    bad = runner.invoke(app, ["report", "gate", str(folder), "--gate", str(tmp_path / "bad.yaml")])
    assert bad.exit_code == 2 and len(bad.output.strip().splitlines()) == 1 and "bad.yaml:2: YAML" in bad.output
    assert "Traceback" not in bad.output
    missing = runner.invoke(app, ["report", "gate", str(tmp_path), "--gate", str(tmp_path / "go.yaml")])
    assert missing.exit_code == 2 and "not a run folder" in missing.output
    # without --gate: the report's own config gate: section
    own = runner.invoke(app, ["report", "gate", str(folder)])
    assert own.exit_code == 0 and "closed trades: 25" in own.output


def test_the_verdict_goes_on_the_tear_sheet_once(tmp_path: Path) -> None:
    folder = _report(tmp_path / "r", _equity(5), {"n_closed": 25, "win_rate": 0.6})
    (folder / "tearsheet.html").write_text('<html><body>\n<div class="container">\n<h1>x</h1>\n</div>\n</body></html>')
    write_gate(folder, evaluate_gate(folder, GateSpec(min_trades=20)))
    write_gate(folder, evaluate_gate(folder, GateSpec(min_trades=30)))  # re-evaluated: replaces the section
    page = (folder / "tearsheet.html").read_text()
    assert page.count('<div id="gate"') == 1 and "NO-GO" in page and 'href="gate.html"' in page
    assert page.index('<div id="gate"') < page.index("</body>")


def test_gate_refuses_what_is_not_a_paper_session_or_its_backtest(tmp_path: Path) -> None:
    """Found adversarially: a sweep report was accepted as the backtest of another experiment's paper session
    (tracking error 18.84 %), the gate ran on a sweep report, and an empty gate file got the experiment's message."""
    paper = _report(tmp_path / "p", _equity(6), {"n_closed": 25, "win_rate": 0.6})
    (paper / "manifest.json").write_text(json.dumps({"experiment": "pd", "kind": "paper"}))
    sweep = _report(tmp_path / "s", _equity(7), {"n_closed": 25, "win_rate": 0.6})
    (sweep / "manifest.json").write_text(json.dumps({"experiment": "pd", "kind": "sweep"}))
    other = _report(tmp_path / "o", _equity(8), {"n_closed": 25, "win_rate": 0.6})
    (other / "manifest.json").write_text(json.dumps({"experiment": "sma", "kind": "backtest"}))
    (tmp_path / "te.yaml").write_text("max_tracking_error: 0.05\n")
    (tmp_path / "empty.yaml").write_text("\n")
    (tmp_path / "n.yaml").write_text("min_trades: 5\n")
    cases = {
        ("report", "gate", str(sweep), "--gate", str(tmp_path / "n.yaml")): "a sweep report; the gate evaluates",
        ("report", "gate", str(paper), "--gate", str(tmp_path / "te.yaml"), "--backtest", str(sweep)):
            "a sweep report, not a backtest",
        ("report", "gate", str(paper), "--gate", str(tmp_path / "te.yaml"), "--backtest", str(other)):
            "a backtest of 'sma', but the paper session ran 'pd'",
        ("report", "gate", str(paper), "--gate", str(tmp_path / "empty.yaml")): "the gate file is empty",
    }
    for args, expect in cases.items():
        res = runner.invoke(app, list(args))
        assert res.exit_code == 2 and expect in res.output and "Traceback" not in res.output, (args, res.output)
    assert not (sweep / "gate.json").exists() and not (paper / "gate.json").exists()
