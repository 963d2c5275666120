"""The ``alpaca`` broker component: paper (or live) trading through Alpaca in a backtrader session.

Registering it costs nothing: alpaca-py and the session core are imported inside :meth:`AlpacaBroker.create`,
so ``qf plugins`` and ``qf validate`` stay fast and work without keys. Keys come only from the
environment (``ALPACA_API_KEY``, ``ALPACA_SECRET_KEY``); they are never a parameter, so they cannot end
up in a YAML file, a saved config or a report.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field, field_validator

from qf.components import Broker, Params


class AlpacaBroker(Broker):
    """Alpaca through alpaca-py: crash-safe orders, restart reconciliation, a kill switch.

    ``create()`` returns a backtrader broker (:class:`qf_plugins.alpaca.bt_broker.AlpacaBtBroker`)
    that ``qf paper`` drives; a backtest (``qf run``) refuses it and asks for ``sim``. URLs default to the
    environment (``ALPACA_TRADING_URL``, ``ALPACA_DATA_URL``, ``ALPACA_STREAM_URL``, e.g. the emulator's)
    and then to Alpaca's. ``paper: false`` trades real money and needs ``ALPACA_PAPER=false`` in the
    environment as well. ``cash_buffer`` is the share of equity kept in cash so orders sized at the last
    close stay affordable when the next open gaps up.

    YAML::

        broker:
          type: alpaca
          params: {paper: true, prefix: qf, reconcile_interval: 30, cash_buffer: 0.02}
    """

    name: ClassVar[str] = "alpaca"

    class Params(Params):
        """Connection and safety settings; no credentials (they come from the environment)."""

        paper: bool = True
        prefix: str = Field("qf", pattern=r"^[A-Za-z0-9]{1,12}$",
                            description="client order id prefix (1-12 letters or digits)")
        reconcile_interval: float = Field(30.0, gt=0, description="seconds between REST reconciliations")
        cash_buffer: float = Field(0.02, ge=0, lt=0.5, description="share of equity never invested")
        stream: bool = Field(True, description="listen to trade_updates (else REST reconciliation only)")
        acceptance_window: float = Field(
            30.0, gt=10.0, le=3600.0,
            description="seconds after a POST during which the broker may still accept an order whose submit "
                        "timed out (above the 10 s HTTP timeout); until then it is never sent again")
        trading_url: str | None = None
        data_url: str | None = None
        stream_url: str | None = None

        @field_validator("trading_url", "data_url")
        @classmethod
        def _no_v2(cls, value: str | None) -> str | None:
            # alpaca-py appends "/v2" itself (docs/alpaca.md, "URLs and keys")
            if value is not None and (value.endswith("/") or value.endswith("/v2")):
                raise ValueError("must not end with '/' or '/v2' (alpaca-py adds /v2)")
            return value

    params: Params

    def create(self, execution: Any, state_dir: str | Path | None = None) -> Any:
        """A backtrader broker over an Alpaca session whose journal lives in ``state_dir``.

        Nothing connects here; the paper session calls ``connect()`` (keys, pre-check, reconciliation).

        Example::

            broker = AlpacaBroker({"prefix": "qf"}).create(exp.spec.execution, state_dir=".qf/paper/x")
        """
        from qf_plugins.alpaca.bt_broker import AlpacaBtBroker  # lazy: alpaca

        folder = Path(state_dir) if state_dir is not None else Path(".qf") / "paper" / "alpaca"
        return AlpacaBtBroker(self.params, execution, folder)
