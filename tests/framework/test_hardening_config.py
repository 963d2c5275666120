"""Hostile config and data input (issue 12, items 10-15): one corpus, one contract.

Every case must end with exit code 2, exactly one ``error:`` line naming where the problem is (``file:line``,
``--set ...``, ``--param ...`` or a symbol/date), no traceback, and no new file anywhere under the working
directory (so nothing under the report root). The CLI runs in-process; only the alias bomb runs in a
subprocess, under a timeout, because the old code spun forever on it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from qf.cli.main import app
from qf.config.loader import MAX_COMBOS, load_experiment
from qf.errors import ConfigError
from qf.research.grid import count_combinations, expand_grid, sample_values

runner = CliRunner()

# line numbers below refer to this file (exp.yaml); extra lines start at line 9
BASE = [
    "name: h",
    "data: {type: sample, params: {dataset: arch_sp500}}",
    "signal: {type: sma_cross, params: {fast: 10, slow: 50}}",
    "sizer: {type: equal}",
    "risk:",
    "  - {type: max_weight, params: {limit: 1.0}}",
    "rebalance: {freq: daily}",
    "execution: {fill: next_open, fees: 0.0005}",
]
CSV_DATA = "data: {type: csv, params: {path: prices.csv}}"


def _text(lines: dict[int, str] | None = None, extra: tuple[str, ...] = ()) -> str:
    out = list(BASE)
    for number, text in (lines or {}).items():
        out[number - 1] = text
    return "\n".join([*out, *extra]) + "\n"


@dataclass
class Case:
    """One hostile input: the experiment file, the command after ``qf``, what the error line must contain."""

    args: list[str]
    expect: str
    yaml: str = field(default_factory=_text)
    files: dict[str, str | bytes] = field(default_factory=dict)


def v(expect: str, lines: dict[int, str] | None = None, extra: tuple[str, ...] = (), *opts: str,
      files: dict[str, str | bytes] | None = None) -> Case:
    """``qf validate exp.yaml [opts]``."""
    return Case(["validate", "exp.yaml", *opts], expect, _text(lines, extra), files or {})


def s(item: str, expect: str | None = None) -> Case:
    """``qf validate exp.yaml --set item`` on the valid base file; the error must name the --set."""
    return Case(["validate", "exp.yaml", "--set", item], expect or f"--set {item}:")


def show(expect: str, *params: str, source: str = "csv", files: dict[str, str | bytes] | None = None) -> Case:
    """``qf data show --source SOURCE --param ...``."""
    args = ["data", "show", "--source", source]
    for p in params:
        args += ["--param", p]
    return Case(args, expect, files=files or {})


def csv(body: str) -> dict[str, str | bytes]:
    return {"prices.csv": body}


DEEP = "symbols=" + "[" * 100 + "]" * 100
SWEEP = ("sweep:", "  params:")  # sweep keys start on line 11

CASES: dict[str, Case] = {
    # -- 10. values a backtest cannot use ----------------------------------------------------------------------
    "cash_inf": v("exp.yaml:8: execution.initial_cash: Input should be a finite number",
                  {8: "execution: {initial_cash: .inf}"}),
    "min_order_1e400": v("exp.yaml:8: execution.min_order_value: Input should be a finite number",
                         {8: "execution: {min_order_value: 1e400}"}),
    "cash_nan": v("exp.yaml:8: execution.initial_cash: Input should be a finite number",
                  {8: "execution: {initial_cash: .nan}"}),
    "cash_1e400": v("exp.yaml:8: execution.initial_cash: Input should be a finite number",
                    {8: "execution: {initial_cash: 1e400}"}),
    "cash_1.0e+400": v("exp.yaml:8: execution.initial_cash: Input should be a finite number",
                       {8: "execution: {initial_cash: 1.0e+400}"}),
    "cash_absurd": v("exp.yaml:8: execution.initial_cash: Input should be less than or equal to",
                     {8: "execution: {initial_cash: 1.0e+300}"}),
    "cash_bool": v("exp.yaml:8: execution.initial_cash: expected a number, got the boolean true",
                   {8: "execution: {initial_cash: true}"}),
    "fixed_fees_inf": v("exp.yaml:8: execution.fixed_fees: Input should be a finite number",
                        {8: "execution: {fixed_fees: .inf}"}),
    "fixed_fees_1e400": v("exp.yaml:8: execution.fixed_fees: Input should be a finite number",
                          {8: "execution: {fixed_fees: 1e400}"}),
    "fixed_fees_absurd": v("exp.yaml:8: execution.fixed_fees: Input should be less than or equal to",
                           {8: "execution: {fixed_fees: 1.0e+200}"}),
    "min_order_inf": v("exp.yaml:8: execution.min_order_value: Input should be a finite number",
                       {8: "execution: {min_order_value: .inf}"}),
    "fast_int64": v("exp.yaml:3: signal.params.fast: 9223372036854775808 does not fit a 64-bit integer",
                    {3: "signal: {type: sma_cross, params: {fast: 9223372036854775808, slow: 50}}"}),
    "slow_huge": v("exp.yaml:3: signal.params.slow: 100000000000000000000000 does not fit a 64-bit integer",
                   {3: "signal: {type: sma_cross, params: {fast: 10, slow: 100000000000000000000000}}"}),
    "fast_float_int64": v("exp.yaml:3: signal.params.fast: 1e+19 does not fit a 64-bit integer",
                          {3: "signal: {type: sma_cross, params: {fast: 1.0e+19, slow: 50}}"}),
    "every_float_int64": v("exp.yaml:7: rebalance.every: 1e+30 does not fit a 64-bit integer",
                           {7: "rebalance: {every: 1.0e+30}"}),
    "every_int64": v("exp.yaml:7: rebalance.every: 18446744073709551616 does not fit",
                     {7: "rebalance: {every: 18446744073709551616}"}),
    "negative_int64": v("exp.yaml:3: signal.params.fast: -9223372036854775809 does not fit",
                        {3: "signal: {type: sma_cross, params: {fast: -9223372036854775809, slow: 50}}"}),
    "cooldown_huge": v("exp.yaml:6: risk.0.params.cooldown_bars: 99999999999999999999 does not fit",
                       {6: "  - {type: drawdown_halt, params: {max_drawdown: 0.2,"
                           " cooldown_bars: 99999999999999999999}}"}),
    "fast_true": v("exp.yaml:3: signal.params.fast: expected a number, got the boolean true",
                   {3: "signal: {type: sma_cross, params: {fast: true, slow: 50}}"}),
    "slow_false": v("exp.yaml:3: signal.params.slow: expected a number, got the boolean false",
                    {3: "signal: {type: sma_cross, params: {fast: 10, slow: false}}"}),
    "limit_bool": v("exp.yaml:6: risk.0.params.limit: expected a number, got the boolean true",
                    {6: "  - {type: max_weight, params: {limit: true}}"}),
    "every_bool": v("exp.yaml:7: rebalance.every: expected a number, got the boolean true",
                    {7: "rebalance: {every: true}"}),
    "n_jobs_bool": v("exp.yaml:8: execution.executor.n_jobs: expected a number, got the boolean true",
                     {8: "execution: {executor: {n_jobs: true}}"}),
    "max_gap_bool": v("exp.yaml:2: data.params.max_gap: expected a number, got the boolean true",
                      {2: "data: {type: sample, params: {dataset: arch_sp500, max_gap: true}}"}),
    "wf_train_bool": v("exp.yaml:9: walk_forward.train: expected a number, got the boolean true", {},
                       ("walk_forward: {train: true, test: 50}",)),
    "date_feb30": v("exp.yaml:2: data.params.start: '2020-02-30' is not a valid date",
                    {2: "data: {type: sample, params: {dataset: arch_sp500, start: 2020-02-30}}"}),
    "date_month13": v("exp.yaml:2: data.params.end: '2021-13-01' is not a valid date",
                      {2: "data: {type: sample, params: {dataset: arch_sp500, end: 2021-13-01}}"}),
    "date_not_leap": v("exp.yaml:3: data.params.start: '2019-02-29' is not a valid date",
                       {2: "data:", 3: "  params: {dataset: arch_sp500, start: 2019-02-29}", 4: "  type: sample",
                        5: "sizer: {type: equal}", 6: "signal: {type: sma_cross}"}),
    "date_feb30_set": s("data.params.start=2020-02-30", "--set data.params.start=2020-02-30: data.params.start: "
                                                        "'2020-02-30' is not a valid date"),
    "date_month13_set": s("data.params.end=2021-13-01"),
    "every_beyond_data": v("exp.yaml:7: rebalance.every: 100000 bars is not shorter than the data",
                           {7: "rebalance: {every: 100000}"}),
    "every_beyond_data_set": s("rebalance={every: 100000}", "--set rebalance={every: 100000}: rebalance.every:"),
    "cash_inf_set": s("execution.initial_cash=.inf"),
    "cash_1e400_set": s("execution.initial_cash=1e400"),
    "min_order_inf_set": s("execution.min_order_value=.inf"),
    "fast_true_set": s("signal.params.fast=true", "--set signal.params.fast=true: signal.params.fast: expected a "
                                                  "number, got the boolean true"),
    "fast_huge_set": s("signal.params.fast=99999999999999999999"),
    "every_huge_set": s("rebalance.every=99999999999999999999"),
    # -- 11. what the YAML reader expands ----------------------------------------------------------------------
    "deep_flow": Case(["validate", "exp.yaml"], "exp.yaml:2: nested more than 64 levels deep",
                      "name: x\nsignal: " + "[" * 3000 + "]" * 3000 + "\n"),
    "deep_block": Case(["validate", "exp.yaml"], "nested more than 64 levels deep",
                       "name: x\n" + "".join(" " * i + f"k{i}:\n" for i in range(80)) + " " * 80 + "v: 1\n"),
    "deep_set": s("signal.params.fast=" + "[" * 500 + "]" * 500,
                  "--set signal.params.fast=" + "[" * 500 + "]" * 500 + ": signal.params.fast: nested more than"),
    "recursive_alias": Case(["validate", "exp.yaml"], "exp.yaml:2: alias *a refers to a value that contains it",
                            "name: x\nsignal: &a [1, *a]\n"),
    "wide_alias": Case(["validate", "exp.yaml"], "exp.yaml:4: the document expands to more than 100,000 values",
                       "name: x\na: &a [" + ", ".join(["1"] * 400) + "]\nb: &b [" + ", ".join(["*a"] * 200)
                       + "]\nc: [*b, *b]\n"),
    # -- 12. what qf run checks of a sweep, validate checks too -------------------------------------------------
    "sweep_value_fails_params": v("exp.yaml:11: sweep.params.risk.0.params.limit: value 0: Input should be greater "
                                  "than 0", {}, (*SWEEP, "    risk.0.params.limit: [0, 3]")),
    "sweep_value_too_big": v("exp.yaml:11: sweep.params.risk.0.params.limit: value 3.0: Input should be less than",
                             {}, (*SWEEP, "    risk.0.params.limit: [0.5, 3]")),
    "sweep_index_out_of_range": v("exp.yaml:11: sweep.params.risk.4.params.limit: risk.4: index out of range",
                                  {}, (*SWEEP, "    risk.4.params.limit: [0.5]")),
    "sweep_name_into_list": v("exp.yaml:11: sweep.params.risk.limit: risk is a list; use an index such as risk.0",
                              {}, (*SWEEP, "    risk.limit: [0.5]")),
    "sweep_into_value": v("exp.yaml:11: sweep.params.execution.fees.x: execution.fees is a value, not a section",
                          {}, (*SWEEP, "    execution.fees.x: [1]")),
    "sweep_unknown_param": v("exp.yaml:11: sweep.params.signal.params.fsat: value 5: unknown field; did you mean "
                             "'fast'?", {}, (*SWEEP, "    signal.params.fsat: [5]")),
    "sweep_unknown_param_case": v("exp.yaml:11: sweep.params.signal.params.FAST: value 5: unknown field; did you "
                                  "mean 'fast'?", {}, (*SWEEP, "    signal.params.FAST: [5]")),
    "sweep_missing_params": v("exp.yaml:11: sweep.params.signal.fast: value 5: unknown field", {},
                              (*SWEEP, "    signal.fast: [5]")),
    "sweep_bool_values": v("exp.yaml:11: sweep.params.signal.params.fast: value True: expected a number", {},
                           (*SWEEP, "    signal.params.fast: [true, false]")),
    "sweep_fractional_range": v("exp.yaml:11: sweep.params.signal.params.fast: value 5.5: Input should be a valid "
                                "integer", {}, (*SWEEP, "    signal.params.fast: {range: [5, 10, 0.5]}")),
    "sweep_range_end_invalid": v("exp.yaml:11: sweep.params.signal.params.fast: value 0: Input should be greater",
                                 {}, (*SWEEP, "    signal.params.fast: {range: [10, 0, -5]}")),
    "sweep_range_inf": v("exp.yaml:11: sweep.params.signal.params.fast: 'range' bounds must be finite",
                         {}, (*SWEEP, "    signal.params.fast: {range: [5, .inf, 5]}")),
    "sweep_huge_range": v("exp.yaml:10: sweep.params: 10,000,000,000 combinations before constraints, more than "
                          "the limit of 100,000", {}, (*SWEEP, "    signal.params.fast: {range: [1, 10000000000, 1]}")),
    "sweep_product_too_big": v("exp.yaml:10: sweep.params: 1,000,000 combinations", {},
                               (*SWEEP, "    signal.params.fast: {range: [1, 1000, 1]}",
                                "    signal.params.slow: {range: [1001, 2000, 1]}")),
    "sweep_max_combos_option": v("exp.yaml:10: sweep.params: 46 combinations before constraints, more than the limit "
                                 "of 10", {}, (*SWEEP, "    signal.params.fast: {range: [5, 50, 1]}"),
                                 "--max-combos", "10"),
    "sweep_constraint_unknown": v("exp.yaml:13: sweep.constraints.0: constraint 'fast < slwo': unknown name 'slwo'",
                                  {}, (*SWEEP, "    signal.params.fast: [5, 10]", "  constraints:",
                                       "    - fast < slwo")),
    "sweep_constraint_code": v("exp.yaml:13: sweep.constraints.0: constraint '__import__(\"os\")': only abs(), "
                               "min() and max() calls are allowed", {},
                               (*SWEEP, "    signal.params.fast: [5, 10]", "  constraints:",
                                "    - '__import__(\"os\")'")),
    "sweep_constraint_syntax": v("exp.yaml:13: sweep.constraints.0: constraint 'fast <' is not a valid expression",
                                 {}, (*SWEEP, "    signal.params.fast: [5, 10]", "  constraints:", "    - 'fast <'")),
    "sweep_constraint_empty_grid": v("exp.yaml:12: sweep.constraints: no combination satisfies the constraints", {},
                                     (*SWEEP, "    signal.params.fast: [5, 10]", "  constraints: ['fast > 100']")),
    "sweep_combination_invalid": v("exp.yaml:10: sweep.params: combination signal.params.fast=60: signal.params: "
                                   "fast (60) must be smaller than slow (50)", {},
                                   (*SWEEP, "    signal.params.fast: [10, 60]")),
    "sweep_name": v("exp.yaml:11: sweep.params.name: name cannot be swept", {}, (*SWEEP, "    name: [a, b]")),
    "wf_purge_ge_train": v("exp.yaml:9: walk_forward: purge + embargo (100 + 0) must be smaller than train (100)",
                           {}, ("walk_forward: {train: 100, test: 50, purge: 100}",)),
    "wf_longer_than_data": v("exp.yaml:9: walk_forward: no fold fits", {},
                             ("walk_forward: {train: 100000, test: 50}",)),
    "wf_longer_than_data_set": s("walk_forward={train: 100000, test: 50}",
                                 "--set walk_forward={train: 100000, test: 50}: walk_forward: no fold fits"),
    # -- 13. --set errors name the --set; did-you-mean ignores case --------------------------------------------
    "set_index_far": Case(["validate", "exp.yaml", "--set", "risk.5.type=x"],
                          "--set risk.5.type=x: risk.5: index out of range (risk has 0 item(s)",
                          _text({5: "description: no risk rules", 6: "report: {tearsheet: true}"})),
    "set_index_no_list": Case(["validate", "exp.yaml", "--set", "risk.1.params.limit=0.5"],
                              "--set risk.1.params.limit=0.5: risk.1.type: required field is missing"),
    "set_name_into_list": s("risk.x=3", "--set risk.x=3: risk is a list; use an index such as risk.0"),
    "set_into_scalar": s("execution.fees.x=1", "--set execution.fees.x=1: execution.fees is a value, not a section"),
    "set_empty_segment": s("signal..fast=1", "--set signal..fast=1: expected dotted.path=value"),
    "set_new_list_needs_index_0": Case(["validate", "exp.yaml", "--set", "benchmark.params.symbols.3=X"],
                                       "--set benchmark.params.symbols.3=X: benchmark.params.symbols.3: index out "
                                       "of range"),
    "set_rebalance_both": s("rebalance.every=5", "--set rebalance.every=5: rebalance: give exactly one of"),
    "set_date_in_list": s("data.params.symbols=[2020-02-30]", "--set data.params.symbols=[2020-02-30]: "
                                                               "data.params.symbols: '2020-02-30' is not a valid date"),
    "set_section_over_file_line": s("signal.params={fast: true, slow: 50}", "--set signal.params={fast: true, "
                                                                            "slow: 50}: signal.params.fast: expected"),
    "set_case_hint": s("signal.params.FAST=3", "--set signal.params.FAST=3: signal.params.FAST: unknown field; "
                                               "did you mean 'fast'?"),
    "case_hint_single_letter": Case(["validate", "exp.yaml"], "exp.yaml:3: signal.params.n: unknown field; did you "
                                    "mean 'N'?", _text({3: "signal: {type: strategies/cap.py:CapN, params: {n: 3}}"}),
                                    {"strategies/cap.py": "from qf.components import Params, SignalModel\n\n\n"
                                     "class CapN(SignalModel):\n    name = 'cap_n'\n\n    class Params(Params):\n"
                                     "        N: int = 1\n\n    def compute(self, bars):\n"
                                     "        return bars.close * 0 + 1.0\n"}),
    # -- 14. data read wrongly without a word ------------------------------------------------------------------
    "csv_small_integer_dates": show("prices.csv: line 2: date 1 is an integer qf cannot place", "path=prices.csv",
                                    files=csv("date,close\n1,10\n2,11\n")),
    "csv_mixed_epoch_units": show("prices.csv: line 2: date 1577836800 is an integer qf cannot place",
                                  "path=prices.csv", files=csv("date,close\n1577836800,10\n1577923200000,11\n")),
    "csv_date_unit_not_int": show("prices.csv: line 2: date '2020-01-02' is not an integer, but date_unit is 's'",
                                  "path=prices.csv", "date_unit=s", files=csv("date,close\n2020-01-02,10\n")),
    "csv_close_and_CLOSE": show("prices.csv: columns 'close' and 'CLOSE' both name the close", "path=prices.csv",
                                files=csv("date,close,CLOSE\n2020-01-02,10,11\n2020-01-03,10,11\n")),
    "csv_Date_and_date": show("prices.csv: columns 'Date' and 'date' both name the date", "path=prices.csv",
                              files=csv("Date,date,close\n2020-01-02,2020-01-02,10\n")),
    "csv_na_marker": show("prices.csv: line 3: close ('close') is not a number: 'n/a'", "path=prices.csv",
                          files=csv("date,close\n2020-01-02,10\n2020-01-03,n/a\n2020-01-06,11\n")),
    "csv_NaN_marker": show("prices.csv: line 3: close ('close') is not a number: 'NaN'", "path=prices.csv",
                           files=csv("date,close\n2020-01-02,10\n2020-01-03,NaN\n2020-01-06,11\n")),
    "csv_null_marker": show("prices.csv: line 3: close ('close') is not a number: 'null'", "path=prices.csv",
                            files=csv("date,close\n2020-01-02,10\n2020-01-03,null\n2020-01-06,11\n")),
    "csv_NA_marker_volume": show("prices.csv: line 3: volume ('volume') is not a number: '#N/A'", "path=prices.csv",
                                 files=csv("date,close,volume\n2020-01-02,10,5\n2020-01-03,10,#N/A\n")),
    "csv_date_2100": show("prices.csv: line 3: date 2100-01-04 is in the future", "path=prices.csv",
                          files=csv("date,close\n2020-01-02,10\n2100-01-04,11\n")),
    "csv_epoch_ms_as_s": show("prices.csv: line 2: date", "path=prices.csv", "date_unit=ns",
                              files=csv("date,close\n9999999999999999999,10\n")),
    "csv_price_1e308": show("prices.csv: AAA has an implausibly large (over 1e+10) close (1e+308) on 2020-01-03",
                            "path=prices.csv",
                            files=csv("date,symbol,close\n2020-01-02,AAA,1\n2020-01-03,AAA,1e308\n")),
    "csv_binary_header": show("available columns: \\x1b[2J\\x00junk", "path=prices.csv",
                              files={"prices.csv": b"\x1b[2J\x00junk,\x07x\n\x01,\x02\n"}),
    "run_na_marker": Case(["run", "exp.yaml"], "prices.csv: line 3: close ('close') is not a number: 'n/a'",
                          _text({2: CSV_DATA}), csv("date,close\n2020-01-02,10\n2020-01-03,n/a\n2020-01-06,11\n")),
    "run_date_2100": Case(["run", "exp.yaml"], "prices.csv: line 3: date 2100-01-04 is in the future",
                          _text({2: CSV_DATA}), csv("date,close\n2020-01-02,10\n2100-01-04,11\n")),
    "run_every_beyond_data": Case(["run", "exp.yaml"], "exp.yaml:7: rebalance.every: 10 bars is not shorter than "
                                  "the data (3 bars of", _text({2: CSV_DATA, 7: "rebalance: {every: 10}"}),
                                  csv("date,close\n2020-01-02,10\n2020-01-03,11\n2020-01-06,12\n")),
    "run_fast_true": Case(["run", "exp.yaml"], "exp.yaml:3: signal.params.fast: expected a number",
                          _text({3: "signal: {type: sma_cross, params: {fast: true, slow: 50}}"})),
    "run_huge_sweep": Case(["run", "exp.yaml"], "exp.yaml:10: sweep.params: 10,000,000,000 combinations",
                           _text({}, (*SWEEP, "    signal.params.fast: {range: [1, 10000000000, 1]}"))),
    "run_sweep_bad_value": Case(["run", "exp.yaml"], "exp.yaml:11: sweep.params.risk.0.params.limit: value 0:",
                                _text({}, (*SWEEP, "    risk.0.params.limit: [0, 3]"))),
    # -- 15. report compare and data show -----------------------------------------------------------------------
    "compare_broken_json": Case(["report", "compare", "a", "b"], "a/metrics.json:2: not valid JSON",
                                files={"a/metrics.json": '{"sharpe": 1.0,\n', "b/metrics.json": "{}"}),
    "compare_binary_json": Case(["report", "compare", "a", "b"], "a/metrics.json: not UTF-8 text",
                                files={"a/metrics.json": b"\xff\xfe\x00", "b/metrics.json": "{}"}),
    "compare_list_json": Case(["report", "compare", "b", "a"], "a/metrics.json: expected an object of metrics",
                              files={"a/metrics.json": "[1, 2]", "b/metrics.json": "{}"}),
    "compare_nested_value": Case(["report", "compare", "a", "b"], "a/metrics.json: sharpe is not a number",
                                 files={"a/metrics.json": '{"sharpe": {"x": 1}}', "b/metrics.json": "{}"}),
    "param_bad_date": show("--param start=2020-02-30: '2020-02-30' is not a valid date", "start=2020-02-30",
                           source="sample"),
    "param_unclosed": show("--param symbols=[[[[: params.symbols: Input should be a valid list", "symbols=[[[[",
                           source="sample"),
    "param_deep": show("--param " + DEEP + ": nested more than 64 levels deep", DEEP, source="sample"),
    "param_bool": show("--param max_gap=true: params.max_gap: expected a number, got the boolean true", "max_gap=true",
                       source="sample"),
    "param_int64": show("--param max_gap=99999999999999999999: params.max_gap: 99999999999999999999 does not fit",
                        "max_gap=99999999999999999999", source="sample"),
    "param_empty_key": show("--param =x: expected key=value", "=x", source="sample"),
    "param_twice": show("--param dataset=arch_sp500: dataset is already set by --param dataset=sp500_20",
                        "dataset=sp500_20", "dataset=arch_sp500", source="sample"),
    "param_case_hint": show("--param MAX_GAP=3: params.MAX_GAP: unknown field; did you mean 'max_gap'?", "MAX_GAP=3",
                            source="sample"),
}


def _files_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def _prepare(case: Case, root: Path) -> None:
    (root / "exp.yaml").write_text(case.yaml, encoding="utf-8")
    for name, content in case.files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")


def test_corpus_size():
    assert len(CASES) >= 80


@pytest.mark.parametrize("name", sorted(CASES))
def test_hostile_input_is_one_line_exit_2_and_writes_nothing(name, tmp_path, monkeypatch):
    case = CASES[name]
    _prepare(case, tmp_path)
    monkeypatch.chdir(tmp_path)
    before = _files_under(tmp_path)
    result = runner.invoke(app, case.args)
    output = result.stdout + result.stderr
    assert result.exit_code == 2, output
    assert "Traceback" not in output and result.exception is None or isinstance(result.exception, SystemExit)
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, output
    assert lines[0].startswith("error: "), output
    assert case.expect in lines[0], lines[0]
    assert _files_under(tmp_path) == before  # no report, no temp folder, no index


def test_alias_bomb_is_refused_quickly(tmp_path):
    # nine levels of nine aliases: 9**9 values once expanded; the old loader spun until killed
    levels = ["a0: &a0 [" + ", ".join(["x"] * 9) + "]"]
    levels += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)]
    path = tmp_path / "bomb.yaml"
    path.write_text("name: bomb\n" + "\n".join(levels) + "\n")
    env = {**os.environ, "COLUMNS": "200"}
    proc = subprocess.run([sys.executable, "-m", "qf.cli.main", "validate", str(path)], capture_output=True,
                          text=True, timeout=60, cwd=tmp_path, env=env)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "bomb.yaml:" in lines[0] and "expands to more than 100,000 values" in lines[0]
    assert list(tmp_path.iterdir()) == [path]


# -- behaviour that must keep working ---------------------------------------------------------------------------


def test_set_can_append_a_list_item(tmp_path):
    (tmp_path / "exp.yaml").write_text(_text())
    exp = load_experiment(tmp_path / "exp.yaml", ["risk.1.type=drawdown_halt", "risk.1.params.max_drawdown=0.3"])
    assert [r.name for r in exp.risk] == ["max_weight", "drawdown_halt"]
    assert exp.risk[1].params.max_drawdown == 0.3


def test_valid_sweeps_over_list_items_and_float_ranges_validate(tmp_path):
    (tmp_path / "exp.yaml").write_text(_text({}, (*SWEEP, "    risk.0.params.limit: {range: [0.25, 1.0, 0.25]}",
                                                   "    signal.params.fast: {range: [5.0, 45.0, 5.0]}",
                                                   "  constraints: ['fast < 50']")))
    result = runner.invoke(app, ["validate", str(tmp_path / "exp.yaml")])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "ok"


def test_max_combos_option_lets_a_big_sweep_validate(tmp_path):
    (tmp_path / "exp.yaml").write_text(_text({}, (*SWEEP, "    signal.params.fast: {range: [1, 40, 1]}",
                                                   "    signal.params.slow: {range: [41, 3040, 1]}")))
    assert "120,000 combinations" in runner.invoke(app, ["validate", str(tmp_path / "exp.yaml")]).stderr
    result = runner.invoke(app, ["validate", str(tmp_path / "exp.yaml"), "--max-combos", "120000"])
    assert result.exit_code == 0, result.output
    with pytest.raises(ConfigError, match="more than the limit of 1,000"):
        load_experiment(tmp_path / "exp.yaml", max_combos=1000)
    assert MAX_COMBOS == 100_000


def test_booleans_still_accepted_where_booleans_are_expected(tmp_path):
    (tmp_path / "exp.yaml").write_text(_text({3: "signal: {type: sma_cross, params: {fast: 10, slow: 50, short: true}}",
                                              8: "execution: {fractional: false}"}))
    exp = load_experiment(tmp_path / "exp.yaml")
    assert exp.signal.params.short is True and exp.spec.execution.fractional is False


def test_grid_is_counted_not_allocated():
    spec = {"a.fast": {"range": [1, 10_000_000_000, 1]}, "a.slow": [1, 2, 3]}
    assert count_combinations(spec) == 30_000_000_000
    assert sample_values("a.fast", spec["a.fast"]).tolist() == [1, 2, 10_000_000_000]
    with pytest.raises(ValueError, match="30,000,000,000 combinations"):
        expand_grid(spec, max_combos=1_000_000)
    assert sample_values("x", {"range": [0.1, 0.3, 0.1]}).tolist() == [0.1, 0.2, 0.3]
    assert len(expand_grid({"a.x": [1, 2], "a.y": {"range": [1, 3]}}, max_combos=6)) == 6


def test_epoch_dates_in_the_sweep_free_path_keep_working(tmp_path):
    """A valid experiment over csv data with integer epoch dates runs its checks and validates."""
    stamps = [int(d.timestamp()) for d in pd.bdate_range("2020-01-01", periods=30)]
    rows = "\n".join(f"{t},{10 + i * 0.1:.2f}" for i, t in enumerate(stamps))
    (tmp_path / "prices.csv").write_text("date,close\n" + rows + "\n")
    (tmp_path / "exp.yaml").write_text(_text({2: CSV_DATA, 7: "rebalance: {every: 5}",
                                              3: "signal: {type: sma_cross, params: {fast: 2, slow: 5}}",
                                              8: "execution: {fill: next_close}"}))
    result = runner.invoke(app, ["validate", str(tmp_path / "exp.yaml")])
    assert result.exit_code == 0, result.output
    bars = load_experiment(tmp_path / "exp.yaml").data.load()
    assert bars.index[0] == pd.Timestamp("2020-01-01") and np.isclose(bars.close.iloc[-1, 0], 12.9)


def test_exponent_only_floats_are_numbers(tmp_path):
    """PyYAML alone reads ``1e6`` as the string '1e6'; qf reads it as the number a researcher means (YAML 1.2),
    also inside sweep values, where a string would reach the grid and best.json."""
    (tmp_path / "exp.yaml").write_text(_text({8: "execution: {initial_cash: 1e6, fees: 5e-4}"},
                                             ("sweep:", "  params:", "    execution.initial_cash: [1e5, 2E5]")))
    exp = load_experiment(tmp_path / "exp.yaml")
    assert exp.spec.execution.initial_cash == 1_000_000.0 and exp.spec.execution.fees == 0.0005
    assert exp.raw["sweep"]["params"]["execution.initial_cash"] == [100_000.0, 200_000.0]
    assert all(isinstance(x, float) for x in exp.raw["sweep"]["params"]["execution.initial_cash"])
    (tmp_path / "quoted.yaml").write_text(_text({1: 'name: "1e9"'}))
    assert load_experiment(tmp_path / "quoted.yaml").name == "1e9"
