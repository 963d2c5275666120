"""The live terminal view of a paper session (rich): account, positions, open orders, fills, risk state.

:func:`render` turns a :class:`qf.paper.strategy.SessionView` into one rich renderable; the CLI shows it
in a ``rich.live.Live`` on a terminal and prints :func:`status_line` per bar otherwise (logs, CI).

Example::

    with Live(console=console) as live:
        run_paper(exp, options, on_update=lambda v: live.update(render(v)))
"""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from qf.paper.strategy import SessionView


def _money(v: float | None) -> str:
    return "" if v is None else f"{v:,.2f}"


def _qty(v: float) -> str:
    return f"{v:,.6g}"


def status_line(view: SessionView) -> str:
    """One line per bar for non-interactive output.

    Example::

        status_line(view)   # '2024-01-05  bars 12  equity 101,234.56  dd -1.2%  positions 3  open orders 0'
    """
    when = f"{view.time:%Y-%m-%d}" if view.time is not None else "-"
    b = view.broker
    text = (f"{when}  bars {view.bars_total}  equity {_money(b.equity)}  dd {view.drawdown:.1%}  "
            f"positions {len(b.positions)}  open orders {len(b.open_orders)}")
    if view.halted:
        text += f"  HALTED ({view.halt_detail})" if view.halt_detail else "  HALTED"
    if view.stops:
        text += f"  stops: {', '.join(view.stops)}"
    if view.last_decision:
        text += f"  last decision: {view.last_decision}"
    if view.message:
        text += f"  ({view.message})"
    return text


def render(view: SessionView) -> RenderableType:
    """The whole view: a header, the account, positions, open orders, recent fills and the risk state."""
    b = view.broker
    when = f"{view.time:%Y-%m-%d}" if view.time is not None else "waiting for the first bar"
    head = Text.assemble((f"{view.experiment}", "bold"), f"  {view.mode} on {b.name}  ", (when, "cyan"),
                         f"  bars this run {view.bars_done}, in total {view.bars_total}")
    account = Table.grid(padding=(0, 2))
    account.add_row("equity", _money(b.equity), "cash", _money(b.cash), "buying power", _money(b.buying_power))

    positions = Table(title="positions", expand=True)
    for col in ("symbol", "quantity", "avg price", "value"):
        positions.add_column(col, justify="right" if col != "symbol" else "left")
    for p in b.positions:
        positions.add_row(p.symbol, _qty(p.quantity), _money(p.avg_price), _money(p.market_value))

    orders = Table(title="open orders", expand=True)
    for col in ("ref", "symbol", "side", "quantity", "filled", "status"):
        orders.add_column(col)
    for o in b.open_orders:
        orders.add_row(o.ref, o.symbol, o.side, _qty(o.quantity), _qty(o.filled), o.status)

    fills = Table(title="last fills", expand=True)
    for col in ("time", "symbol", "side", "quantity", "price"):
        fills.add_column(col)
    for f in b.fills[:8]:
        fills.add_row(f"{f.time:%Y-%m-%d %H:%M}", f.symbol, f.side, _qty(f.quantity), _money(f.price))

    risk = Table.grid(padding=(0, 2))
    state = Text("HALTED", style="bold red") if view.halted else Text("trading", style="green")
    risk.add_row("state", state, "drawdown", f"{view.drawdown:.2%}", "peak", _money(view.peak))
    if view.halted and view.halt_detail:
        risk.add_row("halt", view.halt_detail, "", "", "", "")
    risk.add_row("stops this bar", ", ".join(view.stops) or "none", "", "", "", "")
    risk.add_row("last decision", view.last_decision or "-", "", "", "", "")
    parts: list[RenderableType] = [head, account, positions, orders, fills, Panel(risk, title="risk rules")]
    if view.message or b.note:
        parts.append(Text(" ".join(x for x in (view.message, b.note) if x), style="dim"))
    return Panel(Group(*parts), title="qf paper")
