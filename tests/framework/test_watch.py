"""``qf watch``: re-runs on every save of the experiment or of a local component, survives bad edits.

Each test drives the real watch loop: the ``after_run`` hook edits the files between runs, as a user saving
in an editor would, and ``max_runs`` ends the loop.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from qf.cli.watch import Watcher, changed_metrics, local_component_files

YAML = """name: watched
data: {{type: sample, params: {{dataset: sp500_20, start: "2019-01-01", end: "2019-12-31"}}}}
signal: {{type: strategies/mom.py:Mom, params: {{{params}}}}}
sizer: {{type: equal}}
rebalance: {{freq: weekly}}
execution: {{fill: next_close, fees: 0.0005}}
"""

STRATEGY = '''import pandas as pd
from pydantic import Field

from qf.components import Params, SignalModel


class Mom(SignalModel):
    name = "mom"

    class Params(Params):
        lookback: int = Field(20, ge=2)

    @property
    def warmup(self) -> int:
        return self.params.lookback

    def compute(self, bars) -> pd.DataFrame:
        r = bars.close / bars.close.shift(self.params.lookback) - 1
        return (r > {threshold}).astype(float).where(r.notna())
'''

# the line that fails is line 18 of the file
BUGGY = STRATEGY.format(threshold="0").replace("        r = ", "        1 / 0\n        r = ")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "experiments").mkdir()
    (tmp_path / "strategies").mkdir()
    (tmp_path / "experiments" / "x.yaml").write_text(YAML.format(params="lookback: 20"))
    (tmp_path / "strategies" / "mom.py").write_text(STRATEGY.format(threshold="0"))
    return tmp_path


def _watcher(project: Path, edits: dict) -> tuple[Watcher, io.StringIO, io.StringIO]:
    """A watcher over the project that stops after one run more than ``edits``; ``edits[n]`` runs after run n."""
    out, err = io.StringIO(), io.StringIO()
    w = Watcher(project / "experiments" / "x.yaml", out_root=project / "reports", tearsheet=False, poll=0.02,
                out=Console(file=out, width=200), err=Console(file=err, width=200), max_runs=max(edits) + 1,
                after_run=lambda n: edits[n]() if n in edits else None)
    return w, out, err


def _row(out: str, key: str) -> list[str]:
    """The cells of ``key``'s row in the last 'changed since the previous run' table."""
    table = out[out.rindex("changed since the previous run"):]
    line = next(ln for ln in table.splitlines() if re.match(rf"[│|]\s*{key}\s", ln))
    return [c.strip() for c in line.strip("│| ").split("│")]


def test_reruns_on_a_change_of_the_file_and_prints_the_changed_metrics(project):
    yaml = project / "experiments" / "x.yaml"
    w, out, err = _watcher(project, {1: lambda: yaml.write_text(YAML.format(params="lookback: 120"))})
    metrics: list[dict] = []
    edit = w.after_run

    def record(n: int) -> None:
        metrics.append(dict(w.previous or {}))
        edit(n)

    w.after_run = record
    w.loop()
    text = out.getvalue()
    assert w.runs == 2 and err.getvalue() == ""
    assert "watched (vectorbt), run 1" in text and "watched (vectorbt), run 2" in text
    first, second = metrics
    assert first["eval_start"] != second["eval_start"]  # the longer lookback really ran
    before, after, change = _row(text, "sharpe")[1:]
    assert (before, after) == (f"{first['sharpe']:.3f}", f"{second['sharpe']:.3f}")
    assert change == f"{second['sharpe'] - first['sharpe']:+.3f}"
    assert "after the save" in text
    assert len(list((project / "reports" / "watched").iterdir())) == 2  # a report per run


def test_a_bad_edit_prints_the_validate_error_and_the_next_good_edit_runs(project):
    from qf.config.loader import load_experiment
    from qf.errors import QfError

    yaml = project / "experiments" / "x.yaml"
    bad = YAML.format(params="lookbak: 40")
    w, out, err = _watcher(project, {1: lambda: yaml.write_text(bad),
                                        2: lambda: yaml.write_text(YAML.format(params="lookback: 60"))})
    w.loop()
    yaml.write_text(bad)
    with pytest.raises(QfError) as exc:  # what `qf validate` prints for the same file
        load_experiment(yaml)
    errors = [ln for ln in err.getvalue().splitlines() if ln]
    assert errors == [f"error: {p}" for p in exc.value.problems]
    assert re.fullmatch(r"error: .*x\.yaml:3: signal\.params\.lookbak: .*", errors[0])
    text = out.getvalue()
    assert w.runs == 3 and "run 3" in text and "run 2" not in text
    assert "changed since the previous run" in text  # against run 1, the last good one


def test_an_edit_of_a_local_strategy_file_reloads_it_and_reruns(project):
    strategy = project / "strategies" / "mom.py"
    w, out, err = _watcher(project, {
        1: lambda: strategy.write_text("def broken(:\n"),
        2: lambda: strategy.write_text(BUGGY),
        3: lambda: strategy.write_text(STRATEGY.format(threshold="0.05"))})
    w.loop()
    assert w.runs == 4
    syntax, runtime = err.getvalue().splitlines()
    assert "mom.py" in syntax and "SyntaxError" in syntax
    # a bug in the component names its line, and the watch goes on
    assert re.fullmatch(r"error: .*strategies/mom\.py:18: the run failed: ZeroDivisionError: division by zero", runtime)
    text = out.getvalue()
    assert "run 4" in text
    # the reloaded module's stricter threshold trades less
    before, after = (int(v) for v in _row(text, "n_orders")[1:3])
    assert after < before


def test_local_component_files_are_found_like_the_loader_finds_them(project):
    exp = project / "experiments" / "x.yaml"
    assert local_component_files(exp.read_text(), exp) == [(project / "strategies" / "mom.py").resolve()]
    assert local_component_files("signal: {type: sma_cross}\nsizer: {type: qf_plugins.x:Y}", exp) == []


def test_changed_metrics_lists_only_what_changed():
    rows = changed_metrics({"sharpe": 1.0, "cagr": 0.1, "n_orders": 10}, {"sharpe": 1.25, "cagr": 0.1, "n_orders": 7})
    assert rows == [("sharpe", "1.000", "1.250", "+0.250"), ("n_orders", "10", "7", "-3")]


def test_ctrl_c_stops_cleanly_and_a_missing_file_is_one_line(project, monkeypatch):
    from qf.cli.main import app

    started: list[Watcher] = []

    def interrupted(self) -> None:
        started.append(self)
        raise KeyboardInterrupt

    monkeypatch.setattr(Watcher, "loop", interrupted)
    res = CliRunner().invoke(app, ["watch", str(project / "experiments" / "x.yaml"), "--no-tearsheet",
                                   "--set", "signal.params.lookback=30", "--out", str(project / "r")])
    assert res.exit_code == 0 and "stopped" in res.output and "Traceback" not in res.output
    (w,) = started
    assert (w.overrides, w.out_root, w.tearsheet) == (["signal.params.lookback=30"], project / "r", False)
    res = CliRunner().invoke(app, ["watch", str(project / "nope.yaml")])
    assert res.exit_code == 2 and "nope.yaml: no such file" in res.output


def test_the_tear_sheet_is_written_after_the_summary(project):
    out = io.StringIO()
    w = Watcher(project / "experiments" / "x.yaml", out_root=project / "reports", poll=0.02, max_runs=1,
                out=Console(file=out, width=200), err=Console(file=io.StringIO()))
    w.loop()
    text = out.getvalue()
    assert text.index("summary in") < text.index("report: ")
    (run,) = (project / "reports" / "watched").iterdir()
    assert "<title>watched</title>" in (run / "tearsheet.html").read_text()
