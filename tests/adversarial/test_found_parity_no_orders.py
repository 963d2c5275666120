"""Found by adversarial testing: `qf parity` on an experiment that never trades ended in a pandas merge
traceback: the two engines' empty order tables had different dtypes. (Found with data shorter than the warm-up,
which is now refused up front; a flat price never crosses, so the experiment below still never trades.)"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from typer.testing import CliRunner

from qf.cli.main import app
from qf.parity import match_orders


def _orders(symbol_dtype: str) -> pd.DataFrame:
    return pd.DataFrame({"time": pd.Series([], dtype="datetime64[ns]"), "symbol": pd.Series([], dtype=symbol_dtype),
                         "side": pd.Series([], dtype=object), "quantity": pd.Series([], dtype=float),
                         "price": pd.Series([], dtype=float), "fee": pd.Series([], dtype=float)})


def test_empty_order_tables_of_different_dtypes_match() -> None:
    matched, only_a, only_b = match_orders(_orders("float64"), _orders("object"), 1e-9)
    assert len(matched) == len(only_a) == len(only_b) == 0


def test_parity_of_an_experiment_that_never_trades(tmp_path: Path) -> None:
    dates = pd.bdate_range("2020-01-01", periods=40)
    close = np.full(len(dates), 100.0)  # the moving averages never cross: no order in either engine
    pd.DataFrame({"date": dates.strftime("%Y-%m-%d"), "symbol": "AAA", "close": close}).to_csv(
        tmp_path / "p.csv", index=False)
    (tmp_path / "e.yaml").write_text(
        "name: idle\ndata: {type: csv, params: {path: p.csv}}\n"
        "signal: {type: sma_cross, params: {fast: 2, slow: 20}}\nsizer: {type: equal}\n"
        "execution: {fill: next_close}\n")
    result = CliRunner().invoke(app, ["parity", str(tmp_path / "e.yaml")])
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == 0, result.output
    assert "the engines agree" in result.output
