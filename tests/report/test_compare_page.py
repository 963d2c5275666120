"""qf report compare: terminal table + compare.html (overlays, metrics with period/kind/engine/broker, config
diff), refuses one run; qf report open prints the main page's path."""

from __future__ import annotations

import json
import re
import webbrowser

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from qf.cli.main import app

runner = CliRunner()


def _run(root, exp: str, run_id: str, *, kind="backtest", engine="vectorbt", config=None, paper=None,
         sharpe=1.0, overrides=()):
    d = root / exp / run_id
    d.mkdir(parents=True)
    idx = pd.date_range("2020-01-01", periods=5, freq="D")
    pd.DataFrame({"equity": [100.0, 110.0, 99.0, 120.0, 126.0]}, index=idx).to_parquet(d / "equity.parquet")
    (d / "metrics.json").write_text(json.dumps({
        "sharpe": sharpe, "cagr": 0.0523, "max_drawdown": -0.1, "final_equity": 126.0, "initial_cash": 100.0,
        "eval_start": "2020-01-02", "eval_end": "2020-01-05", "eval_bars": 4}))
    (d / "manifest.json").write_text(json.dumps({"experiment": exp, "run_id": run_id, "kind": kind, "engine": engine,
                                                 "created": "2024-01-01 00:00:00", "overrides": list(overrides)}))
    (d / "config.yaml").write_text(yaml.safe_dump(config or {"name": exp, "signal": {"params": {"fast": 10}}}))
    if paper:
        (d / "paper.json").write_text(json.dumps(paper))
    (d / "tearsheet.html").write_text("<html></html>")
    return d


@pytest.fixture
def two(tmp_path):
    root = tmp_path / "reports"
    a = _run(root, "sma", "A", overrides=["signal.params.fast=20"],
             config={"name": "sma", "signal": {"params": {"fast": 20, "slow": 50}}, "risk": [{"type": "x"}]})
    b = _run(root, "sma", "B", kind="paper", engine="backtrader", paper={"broker": "alpaca"}, sharpe=0.5,
             config={"name": "sma", "signal": {"params": {"fast": 10, "slow": 50}}})
    return root, a, b


def test_compare_writes_the_page_and_prints_table_and_path(two):
    root, a, b = two
    result = runner.invoke(app, ["report", "compare", str(a), str(b)])
    assert result.exit_code == 0, result.output
    (page,) = root.glob("compare-*.html")  # default: the reports root holding the runs
    assert f"page: {page}" in result.stdout.replace("\n", "")
    for row in ("period", "sharpe", "cagr"):
        assert re.search(rf"│ {row}\s", result.stdout), row
    html = page.read_text()
    assert "<title>compare: sma/A vs sma/B</title>" in html
    assert "Equity, growth of 1 from 2020-01-01" in html and "Drawdown from the running peak" in html
    for cell in ("2020-01-02 to 2020-01-05, 4 bars", "backtest", "paper", "vectorbt", "backtrader", "alpaca",
                 "simulated", "--set signal.params.fast=20", "5.23%", "1.000", "0.500"):
        assert f'<td class="num">{cell}</td>' in html, cell
    diff = html[html.index("Config differences"):]
    assert "signal.params.fast" in diff and "signal.params.slow" not in diff  # only what differs
    assert "risk.0.type" in diff and "(absent)" in diff
    assert 'href="sma/A/tearsheet.html"' in html  # links relative to the page


def test_compare_overlays_are_growth_of_one_and_drawdown(two):
    from qf.report.compare import load_run, overlays

    _, a, b = two
    runs = [load_run(p, json.loads((p / "metrics.json").read_text())) for p in (a, b)]
    eq, dd = overlays(runs)
    assert [t.name for t in eq.data] == [t.name for t in dd.data] == ["sma/A", "sma/B"]
    assert list(eq.data[0].y) == pytest.approx([1.0, 1.1, 0.99, 1.2, 1.26])  # equity / initial cash
    assert list(dd.data[0].y) == pytest.approx([0.0, 0.0, -0.1, 0.0, 0.0])
    # a run that starts later: both curves are 1 on the first day both cover
    late = runs[1].equity.iloc[2:] * 3
    runs[1].equity = late
    eq, _ = overlays(runs)
    assert list(eq.data[0].y) == pytest.approx([1 / 0.99, 1.1 / 0.99, 1.0, 1.2 / 0.99, 1.26 / 0.99])
    assert list(eq.data[1].y) == pytest.approx([1.0, 1.2 / 0.99, 1.26 / 0.99])
    assert "from 2020-01-03" in eq.layout.title.text


def test_compare_refuses_one_run(two):
    _, a, _ = two
    result = runner.invoke(app, ["report", "compare", str(a)])
    assert result.exit_code == 2
    assert "needs two or more run folders, got 1" in result.stderr and "Traceback" not in result.output


def test_compare_same_run_twice_keeps_columns_apart(two, tmp_path):
    _, a, _ = two
    out = tmp_path / "same.html"
    result = runner.invoke(app, ["report", "compare", str(a), str(a), "--out", str(out)])
    assert result.exit_code == 0 and "sma/A #2" in out.read_text()
    assert "identical" in out.read_text()


def test_compare_bad_run_folder_is_one_line(two, tmp_path):
    _, a, _ = two
    result = runner.invoke(app, ["report", "compare", str(a), str(tmp_path)])
    assert result.exit_code == 2 and "not a run folder" in result.stderr and "Traceback" not in result.output


def test_report_open_prints_the_main_page(two, monkeypatch):
    root, a, _ = two
    opened = []
    monkeypatch.setattr(webbrowser, "open", lambda url: opened.append(url) or False)
    result = runner.invoke(app, ["report", "open", str(a)])
    assert result.exit_code == 0
    assert str((a / "tearsheet.html").resolve()) in result.stdout.replace("\n", "")
    assert "no browser available" in result.stderr
    assert opened == [(a / "tearsheet.html").resolve().as_uri()]
    (a / "sweep.html").write_text("<html></html>")  # a sweep's main page is its sweep.html
    monkeypatch.setattr(webbrowser, "open", lambda url: True)
    result = runner.invoke(app, ["report", "open", str(a)])
    assert str((a / "sweep.html").resolve()) in result.stdout.replace("\n", "") and result.stderr == ""


def test_report_open_refuses_what_is_not_a_run(tmp_path):
    result = runner.invoke(app, ["report", "open", str(tmp_path / "nope")])
    assert result.exit_code == 2 and "no such file or folder" in result.stderr
    result = runner.invoke(app, ["report", "open", str(tmp_path)])
    assert result.exit_code == 2 and "no page to open" in result.stderr


def test_compare_out_never_destroys_a_file_that_is_not_a_compare_page(two, tmp_path):
    root, a, b = two
    precious = a / "metrics.json"
    before = precious.read_bytes()
    result = runner.invoke(app, ["report", "compare", str(a), str(b), "--out", str(precious)])
    assert result.exit_code == 2 and "not a qf compare page" in result.stderr
    assert precious.read_bytes() == before
    folder = runner.invoke(app, ["report", "compare", str(a), str(b), "--out", str(a)])
    assert folder.exit_code == 2 and "is a folder" in folder.stderr
    page = tmp_path / "cmp.html"
    assert runner.invoke(app, ["report", "compare", str(a), str(b), "--out", str(page)]).exit_code == 0
    again = runner.invoke(app, ["report", "compare", str(b), str(a), "--out", str(page)])  # a compare page: replaced
    assert again.exit_code == 0, again.output
    assert "<title>compare: sma/B vs sma/A</title>" in page.read_text()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".cmp")] == []
