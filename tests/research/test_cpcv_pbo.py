"""PBO (CSCV) and CPCV: hand-computed cases, the published qualitative behaviour, and the YAML wiring."""

from __future__ import annotations

import io
import json
import math
from itertools import combinations

import numpy as np
import pandas as pd
import pytest
from rich.console import Console
from scipy.stats import rankdata

from qf.config.loader import load_experiment
from qf.errors import QfError
from qf.report.metrics import eval_returns
from qf.research.cpcv import combo_returns, run_cpcv
from qf.research.overfitting import annual_sharpe, cpcv, cpcv_paths, cpcv_splits, n_paths, pbo
from qf.research.sweep import grid_of, run_sweep
from qf.runner import run_experiment

SQ = math.sqrt(252)


# --------------------------------------------------------------------------------------------- PBO


def test_docstring_examples():
    import doctest

    import qf.research.overfitting as mod

    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


def test_pbo_hand_computed_two_partitions():
    # trial A: block 0 rises (SR +0.707/bar), block 1 falls (-0.707); trial B: block 0 flat-mean (SR 0),
    # block 1 rises (+0.707). Split IS={0}: A wins IS, OOS ranks A 1st of 2 (worst) -> w = 1/3, logit ln(1/2).
    # Split IS={1}: B wins IS, OOS block 0 has A 0.707 > B 0 -> B ranks 1 -> same logit. PBO = 1.
    r = np.array([[0.02, 0.01], [0.00, -0.01], [-0.02, 0.01], [0.00, 0.00]])
    res = pbo(r, 2)
    assert res.logits.tolist() == pytest.approx([math.log(0.5)] * 2)
    assert res.pbo == 1.0
    assert res.is_sharpe.tolist() == pytest.approx([SQ / math.sqrt(2)] * 2)
    assert res.oos_sharpe.tolist() == pytest.approx([-SQ / math.sqrt(2), 0.0])
    assert res.prob_loss == 0.5  # one of the two chosen trials loses out of sample
    assert math.isnan(res.degradation_slope)  # both IS Sharpes equal: no line to fit


def test_pbo_four_partitions_hand_ranks():
    # S=4, 2 rows per block, 3 trials. Trial 0 is positive only in blocks 0,1; trial 1 only in 2,3;
    # trial 2 is a small steady earner everywhere. With IS={0,1} trial 0 wins IS and is worst OOS, etc.
    up, down = [0.03, 0.01], [-0.03, -0.01]
    steady = [0.0011, 0.0009]
    t0 = up + up + down + down
    t1 = down + down + up + up
    t2 = steady * 4
    r = np.array([t0, t1, t2]).T
    res = pbo(r, 4)
    assert res.logits.size == math.comb(4, 2)
    # the steady trial has Sharpe 8.7/bar on any half (mean .001, std .000115): it wins every IS half,
    # and it is the best OOS in every split as well -> rank 3 of 3, w = 3/4, logit ln 3 > 0
    assert np.allclose(res.logits, math.log(3))
    assert res.pbo == 0.0
    # without the steady trial: IS {0,1} -> t0 wins, OOS worst (w=1/3); IS {2,3} -> t1, worst OOS;
    # mixed halves tie the two trials IS (first wins) and OOS (average rank 1.5 -> w = 1/2, logit 0)
    res2 = pbo(r[:, :2], 4)
    expected = []
    for half in combinations(range(4), 2):
        expected.append(math.log(0.5) if half in ((0, 1), (2, 3)) else 0.0)
    assert res2.logits.tolist() == pytest.approx(expected)
    assert res2.pbo == 1.0


def test_pbo_matches_brute_force_on_rows():
    rng = np.random.default_rng(3)
    r = rng.normal(0.0002, 0.01, (203, 7))
    res = pbo(r, 6)
    rr = r[203 % 6:]
    blocks = np.split(np.arange(len(rr)), 6)
    logits = []
    for half in combinations(range(6), 3):
        is_rows = np.concatenate([blocks[i] for i in half])
        oos_rows = np.setdiff1d(np.arange(len(rr)), is_rows)
        is_sr = rr[is_rows].mean(0) / rr[is_rows].std(0, ddof=1)
        oos_sr = rr[oos_rows].mean(0) / rr[oos_rows].std(0, ddof=1)
        best = int(np.argmax(is_sr))
        w = rankdata(oos_sr)[best] / 8
        logits.append(math.log(w / (1 - w)))
    assert res.logits == pytest.approx(np.array(logits))
    assert res.n_obs == 203 - 203 % 6


def test_pbo_pure_noise_is_near_one_half_and_skill_is_near_zero():
    rng = np.random.default_rng(11)
    values = []
    for _ in range(8):
        values.append(pbo(rng.normal(0, 0.01, (1000, 30)), 10).pbo)
    assert 0.35 < np.mean(values) < 0.65
    noise = rng.normal(0, 0.01, (1000, 30))
    noise[:, 17] += 0.003  # Sharpe ~4.8/yr above the rest
    res = pbo(noise, 10)
    assert res.pbo < 0.05
    assert res.prob_loss == 0.0


@pytest.mark.parametrize("bad", [3, 0, 1, 2.5])
def test_pbo_refuses_odd_partitions(bad):
    with pytest.raises(ValueError, match="even"):
        pbo(np.zeros((40, 3)), bad)


def test_pbo_refuses_nan_and_single_trial():
    with pytest.raises(ValueError, match="finite"):
        pbo(np.full((40, 3), np.nan), 4)
    with pytest.raises(ValueError, match="2 trials"):
        pbo(np.zeros((40, 1)), 4)


# -------------------------------------------------------------------------------------------- CPCV


@pytest.mark.parametrize(("n", "k"), [(6, 2), (6, 1), (10, 2), (8, 3), (5, 4)])
def test_cpcv_path_count_and_every_piece_used_once(n, k):
    splits = cpcv_splits(200, n, k)
    assert len(splits) == math.comb(n, k)
    paths = cpcv_paths(splits, n)
    assert len(paths) == n_paths(n, k) == math.comb(n, k) * k // n
    used = sorted((s, g) for p in paths for g, s in enumerate(p))
    assert used == sorted((s.index, g) for s in splits for g in s.test_groups)
    for p in paths:
        assert all(g in splits[s].test_groups for g, s in enumerate(p))


def test_cpcv_purge_and_embargo_around_every_test_group():
    splits = cpcv_splits(60, 6, 2, purge=2, embargo=3)
    s = next(x for x in splits if x.test_groups == (1, 3))  # groups of 10: tests 10-19 and 30-39
    assert s.test.tolist() == [*range(10, 20), *range(30, 40)]
    assert s.train.tolist() == [*range(0, 8), *range(23, 28), *range(43, 60)]
    assert not set(s.train) & set(s.test)


def test_cpcv_choices_use_train_rows_only():
    idx = pd.bdate_range("2020-01-01", periods=300)
    r = pd.DataFrame(np.random.default_rng(5).normal(0, 0.01, (300, 4)), index=idx, columns=list("abcd"))
    base = cpcv(r, 6, 2, purge=3, embargo=3)
    split0 = cpcv_splits(300, 6, 2, 3, 3)[0]
    changed = r.copy()
    changed.iloc[split0.test, :] = np.random.default_rng(9).normal(0, 0.05, (split0.test.size, 4))
    again = cpcv(changed, 6, 2, purge=3, embargo=3)
    assert again.splits["chosen"].iloc[0] == base.splits["chosen"].iloc[0]
    # and the choice is the train-Sharpe argmax
    assert base.splits["chosen"].iloc[0] == "abcd"[int(np.argmax(annual_sharpe(r.to_numpy()[split0.train])))]


def test_cpcv_paths_are_assembled_from_the_chosen_test_pieces():
    idx = pd.bdate_range("2020-01-01", periods=120)
    vals = np.random.default_rng(2).normal(0, 0.01, (120, 3))
    r = pd.DataFrame(vals, index=idx, columns=["x", "y", "z"])
    res = cpcv(r, 4, 2)
    assert len(res.paths) == 3 and res.path_returns.shape == (120, 3)
    chosen = res.splits["chosen"].map({"x": 0, "y": 1, "z": 2}).to_numpy()
    splits = cpcv_splits(120, 4, 2)
    for j, supply in enumerate(cpcv_paths(splits, 4)):
        expect = np.concatenate([vals[g * 30:(g + 1) * 30, chosen[s]] for g, s in enumerate(supply)])
        assert res.path_returns[j].to_numpy() == pytest.approx(expect)
        assert res.paths["sharpe"].iloc[j] == pytest.approx(expect.mean() / expect.std(ddof=1) * SQ)


def test_cpcv_refuses_bad_sizes():
    with pytest.raises(ValueError, match="smaller than n_groups"):
        cpcv_splits(100, 4, 4)
    with pytest.raises(ValueError, match="too few"):
        cpcv_splits(5, 4, 1)
    with pytest.raises(ValueError, match="137,846,528,820 splits is more than 20,000"):
        cpcv_splits(10_000, 40, 20)


# ------------------------------------------------------------------------------------ experiments

YAML = """
name: cpcv_test
data: {type: sample, params: {dataset: arch_sp500, start: "2014-01-01", end: "2018-12-31"}}
signal: {type: sma_cross, params: {fast: 20, slow: 100}}
sizer: {type: equal}
execution: {fill: next_open, fees: 0.0005, slippage: 0.0002}
report: {tearsheet: false}
sweep:
  params:
    signal.params.fast: [10, 20]
    signal.params.slow: [60, 120]
  metric: sharpe
"""


@pytest.fixture(scope="module")
def exp_path(tmp_path_factory):
    p = tmp_path_factory.mktemp("cpcv") / "cpcv_test.yaml"
    p.write_text(YAML)
    return p


def test_combo_returns_equal_single_runs(exp_path):
    exp = load_experiment(exp_path)
    r = combo_returns(exp, exp.data.load(), grid_of(exp))
    assert list(r.columns) == ["fast=10, slow=60", "fast=10, slow=120", "fast=20, slow=60", "fast=20, slow=120"]
    single = run_experiment(load_experiment(exp_path, ["signal.params.fast=10", "signal.params.slow=60",
                                                      "sweep=null"]), write=False)
    start = pd.Timestamp(single.metrics["eval_start"])
    ret = eval_returns(single.result.equity, 100_000, start)
    assert r.iloc[:, 0].to_numpy() == pytest.approx(ret.loc[r.index].to_numpy(), abs=1e-15)
    assert r.index[0] >= start and not r.isna().any().any()


def test_sweep_best_json_has_pbo_next_to_dsr(exp_path, tmp_path):
    buf = io.StringIO()
    exp = load_experiment(exp_path)
    out = run_sweep(exp, tmp_path / "run", Console(file=buf, width=300))
    best = json.loads((out / "best.json").read_text())
    r = combo_returns(exp, exp.data.load(), grid_of(exp))
    expected = pbo(r.to_numpy(), best["pbo_partitions"])
    assert best["pbo"] == pytest.approx(expected.pbo) and 0 <= best["pbo"] <= 1
    assert "dsr" in best and best["pbo_splits"] == math.comb(best["pbo_partitions"], best["pbo_partitions"] // 2)
    assert f"PBO {expected.pbo:.3f}" in buf.getvalue()


def test_sweep_pbo_uses_the_sweeps_own_returns(exp_path, tmp_path, monkeypatch):
    # the PBO reads the returns the sweep already simulated: nothing is simulated a second time
    import qf.research.cpcv as cpcv_mod

    def no_second_pass(*_a, **_k):
        raise AssertionError("the sweep's combinations were simulated again for the PBO")

    monkeypatch.setattr(cpcv_mod, "combo_returns", no_second_pass)
    out = run_sweep(load_experiment(exp_path), tmp_path / "run", Console(file=io.StringIO(), width=300))
    assert json.loads((out / "best.json").read_text())["pbo"] is not None


def test_cpcv_experiment_writes_paths(exp_path, tmp_path):
    buf = io.StringIO()
    out = run_cpcv(load_experiment(exp_path, ["validation={n_groups: 5, n_test_groups: 2, purge: 3, embargo: 2}"]),
                   tmp_path / "cpcv", Console(file=buf, width=300))
    paths = pd.read_csv(out / "cpcv.csv")
    assert len(paths) == n_paths(5, 2) == 4
    summary = json.loads((out / "cpcv.json").read_text())
    assert summary["oos_sharpe_mean"] == pytest.approx(paths["sharpe"].mean())
    assert len(pd.read_csv(out / "cpcv_splits.csv")) == 10
    assert json.loads((out / "metrics.json").read_text())["cpcv"]["n_paths"] == 4
    assert "OOS Sharpe over paths" in buf.getvalue() and (out / "cpcv.html").exists()


def test_cpcv_without_sweep_is_refused(exp_path):
    with pytest.raises(QfError, match="add a sweep"):
        run_cpcv(load_experiment(exp_path, ["sweep=null", "validation={n_groups: 4}"]), None,
                 Console(file=io.StringIO()))


@pytest.mark.parametrize(("override", "message"), [
    ("validation={n_groups: 4, n_test_groups: 4}", "n_test_groups \\(4\\) must be smaller than n_groups \\(4\\)"),
    ("validation={n_grups: 4}", "did you mean 'n_groups'"),
    ("walk_forward={train: 300, test: 100}", "cpcv and walk_forward are two validation schemes"),
])
def test_validation_section_errors_name_the_line(exp_path, override, message):
    from qf.errors import ConfigError

    extra = [override] if override.startswith("validation") else ["validation={n_groups: 4}", override]
    with pytest.raises(ConfigError, match=message):
        load_experiment(exp_path, extra)
