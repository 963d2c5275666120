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


def status_line(view: SessionView, pace: Pace | None = None) -> str:
    """One line per bar for non-interactive output (``pace``: the replay's achieved bars per second).

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
    speed = pace.text() if pace is not None else ""
    if speed:
        text += f"  pace {speed}"
    return text


# a terminal's classic size: the whole view must fit it, borders included
HEIGHT = 24


class Pace:
    """The replay pace a session achieves, against the ``--speed`` asked (bars per second).

    Fed one call per processed bar; ``rate`` is the bars per second since the first bar of this run.
    A paced replay that runs below 90 % of its asked speed (after a second or five bars) cannot keep up:
    the pipeline takes longer than a bar interval.

    Example::

        pace = Pace(asked=50.0)
        for t in (0.0, 0.1, 0.2):        # monotonic seconds at each processed bar
            pace.bar(t)
        pace.rate, pace.behind, pace.text()   # (10.0, True, '10.0 bars/s (asked 50: cannot keep up)')
    """

    def __init__(self, asked: float = 0.0) -> None:
        self.asked = float(asked)
        self.first: float | None = None
        self.last: float | None = None
        self.bars = 0

    def bar(self, now: float) -> None:
        """Count one processed bar at monotonic time ``now``."""
        if self.first is None:
            self.first = now
        self.last = now
        self.bars += 1

    @property
    def elapsed(self) -> float:
        """Seconds between the first and the last bar counted."""
        return 0.0 if self.first is None or self.last is None else self.last - self.first

    @property
    def rate(self) -> float | None:
        """Bars per second over this run (None before two bars)."""
        if self.bars < 2 or self.elapsed <= 0:
            return None
        return (self.bars - 1) / self.elapsed

    @property
    def behind(self) -> bool:
        """A paced replay running below 90 % of its asked speed (judged after 5 bars or a second)."""
        rate = self.rate
        settled = self.bars >= 5 or self.elapsed >= 1.0
        return self.asked > 0 and rate is not None and settled and rate < 0.9 * self.asked

    def text(self) -> str:
        """``'17.2 bars/s (asked 50: cannot keep up)'``, ``'49.8 bars/s (asked 50)'`` or ``''`` (too early)."""
        rate = self.rate
        if rate is None:
            return ""
        if self.asked <= 0:
            return f"{rate:.1f} bars/s (as fast as possible)"
        return f"{rate:.1f} bars/s (asked {self.asked:g}{': cannot keep up' if self.behind else ''})"

    def summary(self) -> str:
        """The end-of-run line, e.g. ``'pace: 120 bars in 7.0 s, 17.1 bars/s; asked 50: could not keep up
        (about 58 ms a bar)'``; ``''`` before two bars."""
        rate = self.rate
        if rate is None:
            return ""
        line = f"pace: {self.bars} bars in {self.elapsed:.1f} s, {rate:.1f} bars/s"
        if self.asked > 0:
            line += f"; asked {self.asked:g}"
            if self.behind:
                line += f": could not keep up (about {1000.0 / rate:.0f} ms a bar)"
        return line


def _listing(title: str, columns: tuple[str, ...], rows: list[tuple[str, ...]], room: int,
             right: tuple[int, ...] = ()) -> tuple[list[RenderableType], int]:
    """A titled compact table with at most ``room`` data rows (the title counts the rest); lines used."""
    if not rows:
        return [Text(f"{title}: none", style="bold")], 1
    shown = rows[:max(room, 0)]
    more = len(rows) - len(shown)
    head = Text(f"{title} ({len(rows)}{f', {more} not shown' if more else ''})", style="bold")
    if not shown:
        return [head], 1
    table = Table(box=None, show_edge=False, pad_edge=False, padding=(0, 1), expand=True)
    for k, col in enumerate(columns):
        table.add_column(col, justify="right" if k in right else "left", no_wrap=True, overflow="ellipsis")
    for r in shown:
        table.add_row(*r)
    return [head, table], 2 + len(shown)


def render(view: SessionView, pace: Pace | None = None, height: int = HEIGHT) -> RenderableType:
    """The whole view in ``height`` lines (24 by default, borders included): a header, the account and
    risk state, then positions, open orders and recent fills, each cut to the room left (with how
    many are not shown). ``pace`` adds the replay's achieved bars per second to the header.

    Example::

        Console(width=80, height=24).print(render(view, Pace(asked=50)))
    """
    b = view.broker
    when = f"{view.time:%Y-%m-%d}" if view.time is not None else "waiting for the first bar"
    one = {"no_wrap": True, "overflow": "ellipsis"}  # every fixed line is exactly one line at any width
    head = Text.assemble((f"{view.experiment}", "bold"), f"  {view.mode} on {b.name}  ", (when, "cyan"),
                         f"  bars {view.bars_done} this run, {view.bars_total} in all", **one)
    # the state first: on a narrow terminal the end of a line is what gets cut
    state = ("HALTED", "bold red") if view.halted else ("trading", "green")
    account = Text.assemble(state, "  equity ", (_money(b.equity), "bold"), f"  cash {_money(b.cash)}",
                            f"  buying power {_money(b.buying_power)}" if b.buying_power is not None else "", **one)
    halt = f"  halt: {view.halt_detail}" if view.halted and view.halt_detail else ""
    risk = Text.assemble(f"dd {view.drawdown:.2%} (peak {_money(view.peak)})", (halt, "red"),
                         f"  stops this bar: {', '.join(view.stops) or 'none'}", **one)
    speed = pace.text() if pace is not None else ""
    behind = pace is not None and pace.behind
    decision = Text.assemble((f"pace {speed}  " if speed else "", "bold red" if behind else ""),
                             f"last decision: {view.last_decision or '-'}", **one)
    lines: list[RenderableType] = [head, account, risk, decision]
    note = " ".join(x for x in (view.message, b.note) if x)
    # the room for the three listings: the height less the panel's borders, the fixed lines, the note
    room = height - 2 - len(lines) - (1 if note else 0)
    positions = [(p.symbol, _qty(p.quantity), _money(p.avg_price), _money(p.market_value)) for p in b.positions]
    orders = [(o.ref, o.symbol, o.side, _qty(o.quantity), _qty(o.filled), o.status) for o in b.open_orders]
    fills = [(f"{f.time:%Y-%m-%d %H:%M}", f.symbol, f.side, _qty(f.quantity), _money(f.price)) for f in b.fills]
    # each listing takes a title line, a header line when it has rows, then rows; rows are shared out
    # in turn (positions first) until the room is used
    sections = [positions, orders, fills]
    fixed = sum(2 if rows else 1 for rows in sections)
    budget = max(room - fixed, 0)
    take = [0, 0, 0]
    while budget > 0 and any(take[k] < len(sections[k]) for k in range(3)):
        for k in range(3):
            if budget > 0 and take[k] < len(sections[k]):
                take[k] += 1
                budget -= 1
    for k, (title, cols, right) in enumerate((
            ("positions", ("symbol", "quantity", "avg price", "value"), (1, 2, 3)),
            ("open orders", ("ref", "symbol", "side", "quantity", "filled", "status"), (3, 4)),
            ("last fills", ("time", "symbol", "side", "quantity", "price"), (3, 4)))):
        part, _ = _listing(title, cols, sections[k], take[k], right)
        lines += part
    if note:
        lines.append(Text(note, style="dim", **one))
    return Panel(Group(*lines), title="qf paper", height=height)
