"""Where a paper session's bars come from, and how they reach backtrader.

A :class:`BarSource` gives the warm-up history once, then new *completed* bars as they appear, and the
calendar the rebalance schedule needs. Two sources exist:

- :class:`ReplaySource` replays a loaded history on an accelerated clock (``speed`` bars per second,
  0 = as fast as possible): the offline ``--broker sim`` session;
- the Alpaca data plugin's live source polls the market-data API for each new completed daily bar.

Backtrader sees them through :class:`qf.engines.backtrader.paper.LiveFeed`, a live feed per symbol
(``islive()``), all fed by one :class:`BarHub` so that every symbol's bar of a date arrives in the same
cerebro iteration. A feed returns ``None`` while no bar is due (cerebro keeps looping, so broker
notifications keep flowing) and ``False`` once the source is exhausted.

Example::

    source = ReplaySource(bars, start=250, speed=5.0)          # bars 250.. at 5 bars per second
    hub = BarHub(source, bars.symbols, bars.fields)
    for k, symbol in enumerate(bars.symbols):
        cerebro.adddata(LiveFeed(dataname=symbol, hub=hub, column=k), name=symbol)
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import pandas as pd

from qf.bars import Bars
from qf.config.schema import RebalanceSpec
from qf.paper.schedule import index_calendar, is_decision


@dataclass(frozen=True)
class LiveBar:
    """One completed bar of every symbol: ``values[field]`` is an array over the symbols (NaN = no bar).

    Example::

        LiveBar(pd.Timestamp("2024-01-02"), {"close": np.array([185.6, 370.9])})
    """

    time: pd.Timestamp
    values: dict[str, np.ndarray]


@runtime_checkable
class BarSource(Protocol):
    """Bars for a paper session: history first, then completed bars as they come.

    Example::

        history = source.history()          # warm-up bars (validated)
        new = source.poll(0.2)              # [] while nothing is new, None once the source has ended
    """

    def history(self) -> Bars:
        """The bars known before the session starts trading."""
        ...

    def poll(self, timeout: float) -> list[LiveBar] | None:
        """New completed bars (waiting at most ``timeout`` seconds); ``[]`` if none yet, None when ended."""
        ...

    def is_decision(self, t: pd.Timestamp, spec: RebalanceSpec, anchor: pd.Timestamp) -> bool:
        """Whether ``t`` is a rebalance decision, from the calendar (``anchor``: where ``every: n`` counts)."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


class ReplaySource:
    """Replays ``bars[start:]`` after a history of ``bars[:start]``, ``speed`` bars per second.

    The calendar is the data's own index, so decisions fall exactly where a backtest of the same bars
    puts them. ``speed=0`` replays as fast as the session can process.

    Example::

        src = ReplaySource(bars, start=100, speed=0)
        src.history().index[-1] == bars.index[99]      # True
        src.poll(0.1)[0].time == bars.index[100]       # True
    """

    def __init__(self, bars: Bars, start: int, speed: float = 0.0, *,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> None:
        if not 0 <= start <= len(bars.index):
            raise ValueError(f"start {start} outside the {len(bars.index)} bars")
        self.bars = bars
        self.start = start
        self.speed = float(speed)
        self._next = start
        self._due: float | None = None  # when the next bar is due (None: at once, the first bar)
        self._clock = clock
        self._sleep = sleep
        self._arrays = {f: getattr(bars, f).to_numpy(dtype=float) for f in bars.fields}

    def __repr__(self) -> str:
        return f"ReplaySource({self.bars.source}, start={self.start}, speed={self.speed:g})"

    def history(self) -> Bars:
        """``bars[:start]``: what the session knows before its first replayed bar."""
        return self.bars.iloc(slice(0, self.start))

    @property
    def remaining(self) -> int:
        """Bars not replayed yet."""
        return len(self.bars.index) - self._next

    def poll(self, timeout: float) -> list[LiveBar] | None:
        """The next bar once it is due (at most ``timeout`` seconds of waiting), ``[]`` before, None at the end."""
        if self._next >= len(self.bars.index):
            return None
        if self.speed > 0:
            now = self._clock()
            if self._due is not None and now < self._due:
                self._sleep(min(self._due - now, max(timeout, 0.0)))
                now = self._clock()
                if now < self._due:
                    return []
            # bars are due on a steady grid of 1/speed, so the time the session spends on a bar does not
            # slow the pace; a bar handed out late (the previous one took longer than the interval) starts
            # a new grid, so the bars it delayed do not follow in a burst
            interval = 1.0 / self.speed
            late = self._due is None or now > self._due + 0.5 * interval
            self._due = (now if late else self._due) + interval
        k = self._next
        self._next += 1
        return [LiveBar(self.bars.index[k], {f: a[k].copy() for f, a in self._arrays.items()})]

    def is_decision(self, t: pd.Timestamp, spec: RebalanceSpec, anchor: pd.Timestamp) -> bool:
        """The backtest's schedule: the data's own index is the calendar."""
        nxt, ordinal = index_calendar(self.bars.index, t, anchor)
        return is_decision(t, spec, nxt, ordinal)

    def close(self) -> None:
        """Nothing to release: the bars are in memory."""
        return None


class BarHub:
    """Fans each new bar of a :class:`BarSource` out to one queue per symbol column.

    ``times`` lists the timestamps of the bars handed out, in order, so a strategy can read the exact
    ``pd.Timestamp`` of its ``len(data)``-th bar instead of a float date number.

    Example::

        hub = BarHub(source, ["AAPL", "MSFT"], ("close",))
        hub.pump(0.1)
        hub.queues[0]      # deque([(t, {"close": 185.6})])
    """

    def __init__(self, source: BarSource, symbols: Sequence[str], fields: Sequence[str]) -> None:
        self.source = source
        self.symbols = list(symbols)
        self.fields = tuple(fields)
        self.queues: list[deque[tuple[pd.Timestamp, dict[str, float]]]] = [deque() for _ in self.symbols]
        self.times: list[pd.Timestamp] = []
        self.done = False

    def pump(self, timeout: float) -> None:
        """Ask the source for new bars (waiting at most ``timeout``) and queue them for every feed."""
        if self.done:
            return
        new = self.source.poll(timeout)
        if new is None:
            self.done = True
            return
        for bar in new:
            self.times.append(bar.time)
            for k, q in enumerate(self.queues):
                q.append((bar.time, {f: float(bar.values[f][k]) if f in bar.values else np.nan
                                     for f in self.fields}))
