"""The Alpaca broker and data components as plugins, the shipped experiment, and the live view."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from pydantic import ValidationError
from rich.console import Console
from typer.testing import CliRunner

from qf.cli.main import app as main_app
from qf.config.loader import load_experiment
from qf.paper.broker import BrokerView, FillView, OrderView, PositionView
from qf.paper.session import default_state_dir, session_config_hash
from qf.paper.strategy import SessionView, order_ref
from qf.paper.view import render, status_line
from qf.registry import get_registry
from qf_plugins.alpaca.broker import AlpacaBroker
from qf_plugins.alpaca.source import AlpacaSource

ROOT = Path(__file__).resolve().parents[2]
EXPERIMENT = ROOT / "experiments/hrp_swing_alpaca.yaml"


def test_registering_does_not_import_alpaca_py():
    code = ("import sys; from qf.registry import get_registry; reg = get_registry(); "
            "assert 'alpaca' in reg.names('broker') and 'alpaca' in reg.names('data'), reg.names('broker'); "
            "loaded = sorted(m for m in sys.modules if m == 'alpaca' or m.startswith('alpaca.')); "
            "assert not loaded, loaded; print('light')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "light", out.stderr


def test_the_shipped_experiment_validates_without_keys(monkeypatch):
    for var in ("ALPACA_API_KEY", "ALPACA_SECRET_KEY", "ALPACA_TRADING_URL", "ALPACA_DATA_URL"):
        monkeypatch.delenv(var, raising=False)
    result = CliRunner().invoke(main_app, ["validate", str(EXPERIMENT)])
    assert result.exit_code == 0 and result.stdout.strip() == "ok", result.output
    exp = load_experiment(EXPERIMENT)
    assert isinstance(exp.broker, AlpacaBroker) and isinstance(exp.data, AlpacaSource)
    hrp = load_experiment(ROOT / "experiments/hrp_swing.yaml")
    # the same strategy as the flagship backtest, on Alpaca's bars of the same 20 large caps
    assert exp.spec.signal == hrp.spec.signal and exp.spec.sizer == hrp.spec.sizer and exp.spec.risk == hrp.spec.risk
    assert exp.spec.rebalance == hrp.spec.rebalance
    assert exp.spec.execution.model_dump(exclude={"engine", "fill"}) == hrp.spec.execution.model_dump(
        exclude={"engine", "fill"})
    assert exp.data.params.symbols == hrp.data.load().symbols
    assert exp.spec.execution.fill == "next_open"
    def keys_of(node):
        if isinstance(node, dict):
            for k, v in node.items():
                yield str(k)
                yield from keys_of(v)
        elif isinstance(node, list):
            for v in node:
                yield from keys_of(v)

    # keys live in the environment only: no field of the file names a credential, no ${VAR} either
    assert not [k for k in keys_of(exp.raw) if re.search(r"key|secret|token|password", k, re.I)]
    assert "${" not in EXPERIMENT.read_text()


def test_component_params_are_checked():
    assert AlpacaBroker({}).params.prefix == "qf"
    with pytest.raises(ValidationError, match="pattern"):
        AlpacaBroker({"prefix": "q-f"})
    with pytest.raises(ValidationError, match="must not end with"):
        AlpacaBroker({"trading_url": "http://127.0.0.1:8001/v2"})
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        AlpacaBroker({"api_key": "PK..."})  # keys are not a parameter: they could end up in a YAML file
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        AlpacaSource({"symbols": ["AAPL"], "secret_key": "x"})
    assert AlpacaSource({"symbols": ["aapl"]}).params.symbols == ["AAPL"]
    with pytest.raises(ValidationError, match="listed twice"):
        AlpacaSource({"symbols": ["AAPL", "aapl"]})
    with pytest.raises(ValidationError, match="pattern"):
        AlpacaSource({"symbols": ["AAPL"], "timeframe": "daily"})
    reg = get_registry()
    assert reg.get("broker", "alpaca").cls is AlpacaBroker and reg.get("data", "alpaca").cls is AlpacaSource


def test_order_refs_and_state_identity(tmp_path):
    assert order_ref(pd.Timestamp("2024-01-05"), "BRK.B") == "20240105_BRK_B"
    exp = load_experiment(EXPERIMENT)
    again = load_experiment(EXPERIMENT, ["report.dir=elsewhere", "execution.engine=vectorbt", "broker.type=sim",
                                         "broker.params={}", "data.params.poll_interval=5",
                                         "data.params.end=2025-01-01"])
    # where reports go, the engine of backtests and the broker do not change what the session trades
    assert session_config_hash(exp) == session_config_hash(again)
    assert session_config_hash(exp) != session_config_hash(load_experiment(EXPERIMENT, ["sizer.params.window=100"]))
    assert default_state_dir(exp, "alpaca") == Path(".qf/paper/hrp_swing_alpaca-alpaca")


def test_live_view_shows_account_orders_fills_and_risk():
    broker = BrokerView("alpaca", cash=20_000.0, equity=101_234.5, buying_power=19_000.0,
                        positions=[PositionView("AAPL", 10.0, 185.5, 1_860.0)],
                        open_orders=[OrderView("20240105_MSFT", "MSFT", "buy", 3.0, 1.0, "partially_filled")],
                        fills=[FillView(pd.Timestamp("2024-01-08 09:30"), "AAPL", "buy", 10.0, 185.5)],
                        halted=True, halt_reason="qf risk: drawdown_halt halted trading")
    view = SessionView("hrp_swing_alpaca", "live", pd.Timestamp("2024-01-05"), 2, 40, broker, peak=110_000.0,
                       drawdown=-0.0797, halted=True, halt_detail="until an operator resets it", stops=["XOM"],
                       last_decision="halt at 2024-01-05")
    console = Console(width=140, record=True)
    console.print(render(view))
    text = console.export_text()
    for piece in ("hrp_swing_alpaca", "101,234.50", "AAPL", "20240105_MSFT", "partially_filled", "HALTED",
                  "-7.97%", "XOM", "halt at 2024-01-05", "185.50"):
        assert piece in text, piece
    line = status_line(view)
    assert line.startswith("2024-01-05  bars 40  equity 101,234.50") and "HALTED" in line and "stops: XOM" in line
