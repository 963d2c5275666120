"""The walk-forward runner hands the full data to a HistorySharing model (checked with isinstance), and only to one."""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
from rich.console import Console

from qf.config.loader import load_experiment
from qf.research.walk_forward import run_walk_forward
from qf.testing.contracts import sample_bars

MODEL = '''
from pathlib import Path

import pandas as pd

from qf.components import HistorySharing, Params, SignalModel


class Fitted(SignalModel):
    name = "fitted_mean"

    class Params(Params):
        log: str = ""

    def fit(self, train_bars):
        self.mean = train_bars.close.mean()
        return self

    def compute(self, bars):
        return (bars.close > self.mean).astype(float)

    def evaluate(self, bars, test):
        return {}

    def save(self, directory):
        Path(directory).mkdir(parents=True, exist_ok=True)
        return Path(directory)

    @classmethod
    def summarize(cls, fitted, directory):
        pass


class Sharing(Fitted):
    name = "sharing_mean"

    def share_history(self, bars, shared):
        shared.setdefault("n", len(bars.index))  # the per-run dict: the same object for every fold
        with open(self.params.log, "a") as f:
            f.write(f"{len(bars.index)} {shared['n']} {isinstance(self, HistorySharing)}\\n")
        return self
'''

YAML = """
name: sharing
data: {{type: csv, params: {{path: prices.csv}}}}
signal: {{type: "model.py:{cls}", params: {{log: "{log}"}}}}
sizer: {{type: equal}}
rebalance: {{freq: weekly}}
execution: {{fill: next_close}}
walk_forward: {{train: 200, test: 100}}
report: {{tearsheet: false}}
"""


def _run(tmp_path: Path, cls: str) -> list[str]:
    bars = sample_bars(n_symbols=3, n_bars=520, seed=4)
    folder = tmp_path / cls
    folder.mkdir()
    long = bars.close.stack().rename("close").to_frame()
    long.index.names = ["date", "symbol"]
    long.reset_index().to_csv(folder / "prices.csv", index=False)
    (folder / "model.py").write_text(MODEL)
    log = folder / "calls.log"
    (folder / "x.yaml").write_text(YAML.format(cls=cls, log=log))
    run_walk_forward(load_experiment(folder / "x.yaml"), folder / "r", Console(file=io.StringIO()), workers=2)
    return log.read_text().splitlines() if log.exists() else []


def test_a_history_sharing_model_gets_the_full_data_once_per_fold(tmp_path: Path) -> None:
    calls = _run(tmp_path, "Sharing")
    n_folds = len(pd.read_csv(tmp_path / "Sharing" / "r" / "folds.csv"))
    assert n_folds >= 3 and calls == ["520 520 True"] * n_folds


def test_a_model_without_it_is_left_alone(tmp_path: Path) -> None:
    assert _run(tmp_path, "Fitted") == []
