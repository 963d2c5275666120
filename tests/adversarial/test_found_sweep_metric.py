"""Found by adversarial testing: a misspelled sweep metric passed `qf validate` and `qf run` only refused it
after every combination had been simulated (and without naming the file's line)."""

from __future__ import annotations

from pathlib import Path

import pytest

from qf.config.loader import load_experiment
from qf.errors import ConfigError

EXP = """name: m
data: {type: sample, params: {dataset: arch_sp500}}
signal: {type: sma_cross, params: {fast: 5, slow: 20}}
sizer: {type: equal}
sweep:
  params: {signal.params.fast: [5, 10]}
  metric: sharpness
"""


def test_an_unknown_sweep_metric_is_refused_at_its_line(tmp_path: Path) -> None:
    path = tmp_path / "e.yaml"
    path.write_text(EXP)
    with pytest.raises(ConfigError) as info:
        load_experiment(path)
    assert f"{path}:7: sweep.metric: 'sharpness' is not a metric; did you mean 'sharpe'?" in str(info.value)


def test_an_unknown_walk_forward_metric_is_refused_naming_the_set_item(tmp_path: Path) -> None:
    path = tmp_path / "e.yaml"
    path.write_text(EXP.replace("sharpness", "cagr") + "walk_forward: {train: 300, test: 100}\n")
    with pytest.raises(ConfigError) as info:
        load_experiment(path, ["walk_forward.metric=Sortino"])
    assert ("--set walk_forward.metric=Sortino: walk_forward.metric: 'Sortino' is not a metric; "
            "did you mean 'sortino'?") in str(info.value)


def test_every_listed_metric_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "e.yaml"
    path.write_text(EXP.replace("sharpness", "max_drawdown"))
    assert load_experiment(path).spec.sweep.metric == "max_drawdown"
