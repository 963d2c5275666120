"""Experiment loading: env substitution, --set overrides, redaction, JSON schema, and the broken corpus."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from qf.cli.main import app
from qf.config.loader import REDACTED, load_experiment
from qf.errors import ConfigError

HERE = Path(__file__).parent.parent / "configs"
runner = CliRunner()

# file -> every error line `qf validate` must print (without the "error: " prefix); exit code 2
BROKEN: dict[str, list[str]] = {
    "01_syntax_unclosed.yaml": [
        "01_syntax_unclosed.yaml:3: YAML syntax error: while parsing a flow mapping, expected ',' or '}', "
        "but got '<scalar>' (the construct started on line 2)"],
    "02_syntax_tab.yaml": [
        "02_syntax_tab.yaml:3: YAML syntax error: while scanning for the next token, found character '\\t' "
        "that cannot start any token"],
    "03_empty.yaml": ["03_empty.yaml:1: the file is empty; an experiment needs at least name, data, signal, sizer"],
    "04_top_level_list.yaml": ["04_top_level_list.yaml:1: an experiment must be a mapping of sections, got a list"],
    "05_duplicate_key.yaml": ["05_duplicate_key.yaml:5: signal: duplicate key"],
    "06_missing_name.yaml": ["06_missing_name.yaml:1: name: required field is missing"],
    "07_missing_signal.yaml": ["07_missing_signal.yaml:1: signal: required field is missing"],
    "08_misspelled_section.yaml": ["08_misspelled_section.yaml:5: rebalanse: unknown field; did you mean 'rebalance'?"],
    "09_unknown_sizer.yaml": [
        "09_unknown_sizer.yaml:5: sizer.type: 'hrpp' is not an installed sizer; did you mean 'hrp'?"],
    "10_unknown_signal.yaml": [
        "10_unknown_signal.yaml:4: signal.type: 'sma_crossover' is not an installed signal model; "
        "did you mean 'sma_cross'?"],
    "11_unknown_data_source.yaml": [
        "11_unknown_data_source.yaml:3: data.type: 'csvv' is not an installed data source; did you mean 'csv'?"],
    "12_param_wrong_type.yaml": [
        "12_param_wrong_type.yaml:6: signal.params.fast: Input should be a valid integer, unable to parse string "
        "as an integer (got 'ten')"],
    "13_param_unknown.yaml": ["13_param_unknown.yaml:6: signal.params.fsat: unknown field; did you mean 'fast'?"],
    "14_param_cross_check.yaml": [
        "14_param_cross_check.yaml:5: signal.params: fast (60) must be smaller than slow (50)"],
    "15_fill_convention.yaml": [
        "15_fill_convention.yaml:6: execution.fill: Input should be 'next_open', 'next_close' or 'close' "
        "(got 'next_opne')"],
    "16_negative_fees.yaml": [
        "16_negative_fees.yaml:6: execution.fees: Input should be greater than or equal to 0 (got -0.1)"],
    "17_unknown_engine.yaml": [
        "17_unknown_engine.yaml:6: execution.engine: Input should be 'vectorbt' or 'backtrader' (got 'zipline')"],
    "18_rebalance_both.yaml": ["18_rebalance_both.yaml:5: rebalance: give exactly one of 'freq' or 'every'"],
    "19_rebalance_zero.yaml": [
        "19_rebalance_zero.yaml:6: rebalance.every: Input should be greater than or equal to 1 (got 0)"],
    "20_risk_not_list.yaml": ["20_risk_not_list.yaml:5: risk: Input should be a valid list"],
    "21_risk_unknown_rule.yaml": [
        "21_risk_unknown_rule.yaml:7: risk.1.type: 'drawdown_hault' is not an installed risk rule; "
        "did you mean 'drawdown_halt'?"],
    "22_env_missing.yaml": [
        "22_env_missing.yaml:5: data.params.path: environment variable QF_TEST_SURELY_UNSET_VAR is not set"],
    "23_bad_name.yaml": ["23_bad_name.yaml:1: name: 'my experiment' is not a safe folder name: use letters, "
                         "digits, '_', '.' and '-', starting with a letter or digit"],
    "24_zero_cash.yaml": ["24_zero_cash.yaml:6: execution.initial_cash: Input should be greater than 0 (got 0)"],
    "25_unknown_dataset.yaml": [
        "25_unknown_dataset.yaml:5: data.params.dataset: Input should be 'sp500_20', 'sp500_index', 'arch_sp500' "
        "or 'arch_nasdaq' (got 'sp501')"],
    "26_sweep_empty.yaml": ["26_sweep_empty.yaml:6: sweep.params: list at least one parameter to sweep"],
    "27_walk_forward_missing_train.yaml": [
        "27_walk_forward_missing_train.yaml:5: walk_forward.train: required field is missing"],
    "28_benchmark_empty.yaml": [
        "28_benchmark_empty.yaml:3: benchmark: give a symbol of the data, or a data source type"],
    "29_local_plugin_missing.yaml": [
        "29_local_plugin_missing.yaml:4: signal.type: local plugin file 'strategies/no_such_file.py' not found"],
    "30_local_plugin_wrong_kind.yaml": [
        "30_local_plugin_wrong_kind.yaml:4: signal.type: 'qf.components:Sizer' is not a SignalModel subclass"],
    "31_several_problems.yaml": [
        "31_several_problems.yaml:5: signal.params.fast: Input should be greater than or equal to 1 (got 0)",
        "31_several_problems.yaml:6: sizer.type: 'equall' is not an installed sizer; did you mean 'equal'?"],
    "32_params_not_mapping.yaml": ["32_params_not_mapping.yaml:5: signal.params: Input should be a valid dictionary"],
}


def test_corpus_is_complete():
    files = sorted(p.name for p in (HERE / "broken").glob("*.yaml"))
    assert files == sorted(BROKEN) and len(files) >= 25


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_experiment_gives_exact_errors_and_exit_2(name, monkeypatch):
    monkeypatch.chdir(HERE / "broken")
    monkeypatch.delenv("QF_TEST_SURELY_UNSET_VAR", raising=False)
    result = runner.invoke(app, ["validate", name])
    assert result.exit_code == 2, result.output
    lines = [ln.removeprefix("error: ") for ln in result.stderr.strip().splitlines()]
    assert lines == BROKEN[name]
    assert "Traceback" not in result.output


def test_valid_experiment_says_ok():
    result = runner.invoke(app, ["validate", str(HERE / "valid.yaml")])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "ok"


def test_missing_file_is_a_clean_error():
    result = runner.invoke(app, ["validate", "does/not/exist.yaml"])
    assert result.exit_code == 2
    assert "does/not/exist.yaml: no such file" in result.stderr


def test_set_overrides_are_validated_and_named(monkeypatch):
    result = runner.invoke(app, ["validate", str(HERE / "valid.yaml"), "--set", "signal.params.fast=abc"])
    assert result.exit_code == 2
    assert ("--set signal.params.fast=abc: signal.params.fast: Input should be a valid integer, unable to parse "
            "string as an integer (got 'abc')") in result.stderr
    exp = load_experiment(HERE / "valid.yaml", ["signal.params.fast=5", "execution.fees=0.002", "risk=[]"])
    assert exp.signal.params.fast == 5 and exp.spec.execution.fees == 0.002
    with pytest.raises(ConfigError, match="expected dotted.path=value"):
        load_experiment(HERE / "valid.yaml", ["no-equals-sign"])


def test_env_substitution_and_redaction(tmp_path, monkeypatch):
    monkeypatch.setenv("QF_TEST_DIR", str(tmp_path))
    monkeypatch.setenv("QF_TEST_TOKEN", "s3cr3t-value")
    (tmp_path / "e.yaml").write_text(
        "name: e\n"
        "data: {type: csv, params: {path: '${QF_TEST_DIR}/p.csv'}}\n"
        "signal: {type: sma_cross}\n"
        "sizer: {type: equal}\n"
        "broker: {type: sim}\n"
        "description: 'token ${QF_TEST_TOKEN} and ${QF_TEST_UNSET_WITH_DEFAULT:-fallback}'\n"
    )
    exp = load_experiment(tmp_path / "e.yaml")
    assert exp.spec.description == "token s3cr3t-value and fallback"
    saved = json.dumps(exp.redacted())
    assert "s3cr3t-value" not in saved and REDACTED in saved
    assert str(tmp_path) not in saved  # values that came from the environment are redacted too


def test_secret_named_keys_are_redacted():
    from qf.config.loader import redact

    assert redact({"broker": {"params": {"api_key": "abc", "paper": True}}}, set()) == {
        "broker": {"params": {"api_key": REDACTED, "paper": True}}}


def test_schema_command_prints_json_schema():
    result = runner.invoke(app, ["schema"])
    assert result.exit_code == 0
    schema = json.loads(result.stdout)
    assert {"name", "data", "signal", "sizer", "risk", "execution", "sweep", "walk_forward"} <= set(
        schema["properties"])
