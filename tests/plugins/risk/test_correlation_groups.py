"""correlation_cap's per-group caps: a symbol,group mapping file, counts and gross weight per group by hand,
clear errors (missing file, unknown symbols, bad rows, unknown groups), and the sector_caps example."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from qf.bars import Bars
from qf.errors import QfError
from qf_plugins.risk.correlation_cap import CorrelationCap, cap_groups, read_groups

ROOT = Path(__file__).resolve().parents[3]


def _bars(n: int = 80) -> Bars:
    rng = np.random.default_rng(5)
    close = 100 * np.cumprod(1 + rng.normal(0, 0.01, (n, 5)), axis=0)  # independent: no correlation cap fires
    return Bars(close=pd.DataFrame(close, index=pd.bdate_range("2024-01-01", periods=n), columns=list("ABCDE")))


def _groups(tmp_path: Path, text: str = "symbol,group\nA,tech\nB,tech\nC,tech\nD,energy\nE,energy\n") -> Path:
    path = tmp_path / "sectors.csv"
    path.write_text(text)
    return path


def test_cap_groups_by_hand() -> None:
    g = np.array(["t", "t", "t", "e", "e"])
    w = np.array([0.1, 0.3, 0.2, 0.25, np.nan])
    # tech keeps its 2 largest (B 0.3, C 0.2); the NaN (hold) of E is not counted nor changed
    assert cap_groups(w, g, {"t": 2, "e": 1}, None).tolist()[:4] == [0.0, 0.3, 0.2, 0.25]
    # gross cap 0.4: tech 0.6 -> x 2/3; energy 0.25 untouched
    out = cap_groups(w, g, None, 0.4)
    assert np.allclose(out[:4], [0.1 * 2 / 3, 0.3 * 2 / 3, 0.2 * 2 / 3, 0.25]) and np.isnan(out[4])
    # shorts count by |weight|
    assert np.allclose(cap_groups(np.array([-0.3, 0.3, 0, 0, 0]), g, None, 0.3), [-0.15, 0.15, 0, 0, 0])


def test_rule_applies_count_then_weight_caps(tmp_path: Path) -> None:
    bars = _bars()
    rule = CorrelationCap({"max_positions": None, "groups": "sectors.csv", "max_per_group": 2,
                           "group_caps": {"energy": 1}, "max_group_weight": 0.35})
    _groups(tmp_path)
    rule.resolve_paths(tmp_path)
    w = pd.DataFrame([[0.1, 0.2, 0.15, 0.3, 0.25], [0.2, 0.0, 0.0, np.nan, 0.1]], index=bars.index[[70, 75]],
                     columns=list("ABCDE"))
    out = rule.apply(w, bars)
    # row 1: tech keeps B 0.2 and C 0.15 (0.35, at the cap); energy keeps D 0.3 only
    assert np.allclose(out.iloc[0].to_numpy(), [0.0, 0.2, 0.15, 0.3, 0.0])
    # row 2: D holds (NaN), energy's one slot goes to E; tech A alone
    assert np.allclose(out.iloc[1].to_numpy(), [0.2, 0.0, 0.0, np.nan, 0.1], equal_nan=True)


def test_group_file_errors(tmp_path: Path) -> None:
    bars = _bars()
    w = pd.DataFrame([[0.2] * 5], index=bars.index[[70]], columns=list("ABCDE"))
    with pytest.raises(QfError, match=r"groups file .*nope.csv not found"):
        CorrelationCap({"groups": "nope.csv", "max_per_group": 1}).resolve_paths(tmp_path)
    _groups(tmp_path, "symbol,group\nA,tech\nB,tech\n")
    rule = CorrelationCap({"groups": "sectors.csv", "max_per_group": 1}).resolve_paths(tmp_path)
    with pytest.raises(QfError, match="has no group for 3 symbol\\(s\\) of the data: C, D, E"):
        rule.apply(w, bars)
    _groups(tmp_path, "symbol,group\nA,tech\nA,energy\n")
    with pytest.raises(QfError, match=r"sectors.csv:3: A is in group 'tech' already, not 'energy'"):
        CorrelationCap({"groups": "sectors.csv", "max_per_group": 1}).resolve_paths(tmp_path)
    _groups(tmp_path, "ticker,sector\nA,tech\n")
    with pytest.raises(QfError, match=r"sectors.csv:1: the header must name the columns symbol and group"):
        CorrelationCap({"groups": "sectors.csv", "max_per_group": 1}).resolve_paths(tmp_path)
    _groups(tmp_path, "symbol,group\nA,\n")
    with pytest.raises(QfError, match=r"sectors.csv:2: a row needs both a symbol and a group"):
        CorrelationCap({"groups": "sectors.csv", "max_per_group": 1}).resolve_paths(tmp_path)
    _groups(tmp_path)
    with pytest.raises(QfError, match="group_caps names group\\(s\\) 'Tech'"):
        CorrelationCap({"groups": "sectors.csv", "group_caps": {"Tech": 1}}).resolve_paths(tmp_path)
    with pytest.raises(ValueError, match="need a groups file"):
        CorrelationCap({"max_per_group": 1})
    with pytest.raises(ValueError, match="no group cap"):
        CorrelationCap({"groups": "sectors.csv"})


def test_the_sector_file_covers_the_sample_universe_and_the_example_validates() -> None:
    from qf.config.loader import load_experiment

    mapping = read_groups(ROOT / "experiments" / "sectors_sp500_20.csv")
    assert len(mapping) == 20 and mapping["XOM"] == "Energy"
    exp = load_experiment(ROOT / "experiments" / "sector_caps.yaml")
    rule = exp.risk[0]
    assert rule.group_map() == mapping


def test_bad_params_are_one_line_with_the_yaml_line(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from qf.cli.main import app

    text = (ROOT / "experiments" / "sector_caps.yaml").read_text().replace(
        "groups: sectors_sp500_20.csv", "groups: missing.csv")
    (tmp_path / "x.yaml").write_text(text)
    res = CliRunner().invoke(app, ["validate", str(tmp_path / "x.yaml")])
    assert res.exit_code == 2 and "missing.csv not found" in res.output and "Traceback" not in res.output
