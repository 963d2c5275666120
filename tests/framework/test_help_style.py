"""Help pages name values the way click does (PATH, TEXT) and print no Python annotations."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from qf.cli.main import app

runner = CliRunner()


@pytest.mark.parametrize("args", [["--help"], ["run", "--help"], ["paper", "--help"], ["validate", "--help"],
                                  ["report", "compare", "--help"], ["data", "show", "--help"]])
def test_help_has_no_annotation_noise(args: list[str]) -> None:
    res = runner.invoke(app, args, env={"COLUMNS": "120"})
    assert res.exit_code == 0, res.output
    for noise in ("<bool>", "<list", "<str>", "<path>", "{experiment}"):
        assert noise not in res.output, (noise, res.output)


def test_help_keeps_value_labels() -> None:
    res = runner.invoke(app, ["run", "--help"], env={"COLUMNS": "120"})
    assert "[OPTIONS] EXPERIMENT" in res.output
    assert "PATH" in res.output and "TEXT" in res.output
