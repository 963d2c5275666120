"""`qf validate` reads the user's own data files, so a missing or malformed file fails validation, not the run."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from qf.cli.main import app

runner = CliRunner()
EXP = """name: v
data: {type: csv, params: {path: prices.csv}}
signal: {type: sma_cross, params: {fast: 2, slow: 5}}
sizer: {type: equal}
"""


def _validate(folder: Path):
    (folder / "exp.yaml").write_text(EXP)
    return runner.invoke(app, ["validate", str(folder / "exp.yaml")])


def test_missing_file_fails_validate(tmp_path):
    result = _validate(tmp_path)
    assert result.exit_code == 2
    assert result.stderr.count("error:") == 1 and "prices.csv" in result.stderr


def test_duplicate_dates_fail_validate(tmp_path):
    (tmp_path / "prices.csv").write_text("date,close\n2020-01-02,10\n2020-01-02,11\n2020-01-03,12\n")
    result = _validate(tmp_path)
    assert result.exit_code == 2
    assert "2020-01-02" in result.stderr and "Traceback" not in result.output


def test_good_file_validates(tmp_path):
    rows = "\n".join(f"2020-01-{d:02d},{10 + d}" for d in range(1, 29))
    (tmp_path / "prices.csv").write_text("date,close\n" + rows + "\n")
    result = _validate(tmp_path)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "ok"


def test_data_shorter_than_the_warm_up_is_refused(tmp_path):
    """Five bars cannot serve a 5-bar moving average with a next-bar fill: one line naming the signal's line, exit 2,
    and (for `qf run`) no report at all instead of one with an empty period."""
    rows = "\n".join(f"2020-01-{d:02d},{10 + d}" for d in range(1, 6))
    (tmp_path / "prices.csv").write_text("date,close\n" + rows + "\n")
    result = _validate(tmp_path)
    assert result.exit_code == 2
    assert "exp.yaml:3: signal: needs 4 bars of warm-up" in result.stderr and "only 5 bars" in result.stderr
    run = runner.invoke(app, ["run", str(tmp_path / "exp.yaml"), "--out", str(tmp_path / "out")])
    assert run.exit_code == 2 and "warm-up" in run.stderr
    assert not (tmp_path / "out").exists()
