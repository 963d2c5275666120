"""Drift of a paper session's inputs: PSI and KS of the signal's output and features, per bar.

With ``paper: {drift: ...}`` in the experiment (:class:`qf.config.schema.DriftSpec`), a ``qf paper``
session (``--broker sim`` replay or live) measures after every processed bar ``t``:

- the variables: the signal's output (``signal``: every symbol's score, pooled) and, for a signal that
  implements :class:`qf.features.FeatureSource` (the xgboost signal does), every feature column;
- the *current* sample of a variable: its finite values over the trailing ``window`` session bars
  ending at ``t`` (all symbols pooled); the first measurement is at the ``window``-th bar after the
  reference window;
- the *reference* sample: its values over the ``reference_bars`` bars ending at ``reference_end``
  (default: the last bar before the session; a replay starts right after the warm-up, so it needs a
  ``reference_end`` inside the data, typically the end of the model's training window);
- :func:`psi` (population stability index over ``bins`` quantile bins of the reference) and the
  two-sample Kolmogorov-Smirnov statistic and p-value (:func:`ks`, ``scipy.stats.ks_2samp``).

A variable is drifting when its PSI exceeds ``psi_threshold`` (0.1 by default, the usual "some shift"
mark; 0.25 is the usual "major shift") or, when ``ks_pvalue`` is set, when the KS p-value is below it.
The bar where a variable *starts* drifting raises a ``drift`` event (``risk_events.csv``: event ``drift``,
the variable in the ``symbol`` column; the live view shows it on that bar's line). With
``retrain_on_drift: true`` a trainable signal (:class:`qf.components.TrainableSignal`) is refitted on
the trailing ``retrain_bars`` bars up to ``t`` (a ``retrain`` event, logged) and the reference becomes
that training window; refits are at least ``retrain_cooldown`` bars apart. The decision of bar ``t`` is
made before its measurement, so a refit changes decisions from bar ``t + 1`` on (no look-ahead).

What is measured is kept in the session's state folder (``drift.csv``, ``drift_events.csv``,
``drift.json``), so a resumed session continues where it stopped (a refit is redone from its recorded
window), and every paper report gets ``drift.csv`` and ``drift.html``.

Example::

    monitor = DriftMonitor(exp, exp.spec.paper.drift, Path(".qf/paper/x-sim"), history, replay=bars)
    monitor.on_bar(bars.index[300])     # '' or 'drift: signal PSI 0.18'
"""

from __future__ import annotations

import html
import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from qf.bars import Bars
from qf.components import TrainableSignal, implements
from qf.config.schema import DriftSpec
from qf.errors import QfError
from qf.features import feature_frame
from qf.report.page import figure_div, html_page, plotly_js
from qf.report.tearsheet import add_section

log = logging.getLogger(__name__)

# proportions below this are floored before the logarithm: an empty bin would make PSI infinite; 1e-4 is
# the floor most PSI write-ups use (Yurdakul 2018; Siddiqi, Credit Risk Scorecards, 2006)
PSI_FLOOR = 1e-4
ROWS_FILE = "drift.csv"
EVENTS_FILE = "drift_events.csv"
META_FILE = "drift.json"
COLUMNS = ["time", "variable", "kind", "psi", "ks_stat", "ks_pvalue", "n_reference", "n_current", "drift"]


def psi_edges(reference: np.ndarray, bins: int) -> np.ndarray:
    """Inner bin edges: the reference's ``1/bins … (bins-1)/bins`` quantiles (linear interpolation), deduplicated.

    The outer bins are open (``(-inf, e1]`` and ``(e_k, inf)``), so every current value falls in one.

    Example::

        psi_edges(np.arange(100.0), 4)   # array([24.75, 49.5 , 74.25])
    """
    ref = np.asarray(reference, dtype=float)
    return np.unique(np.quantile(ref, np.arange(1, bins) / bins))


def proportions(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Share of ``values`` in each bin ``(-inf, e1], (e1, e2], …, (e_k, inf)``."""
    idx = np.searchsorted(edges, np.asarray(values, dtype=float), side="left")
    counts = np.bincount(idx, minlength=len(edges) + 1).astype(float)
    return counts / max(len(values), 1)


def psi_from_proportions(expected: np.ndarray, actual: np.ndarray) -> float:
    """``sum((a - e) * ln(a / e))`` with both proportions floored at :data:`PSI_FLOOR`.

    Example::

        psi_from_proportions(np.array([0.5, 0.5]), np.array([0.6, 0.4]))   # 0.1 ln 1.2 + 0.1 ln 1.25 = 0.0405
    """
    e = np.maximum(np.asarray(expected, dtype=float), PSI_FLOOR)
    a = np.maximum(np.asarray(actual, dtype=float), PSI_FLOOR)
    return float(np.sum((a - e) * np.log(a / e)))


def psi(reference: np.ndarray, current: np.ndarray, bins: int = 10) -> float:
    """Population stability index of ``current`` against ``reference`` (NaN values dropped).

    The bins are the reference's quantile bins (:func:`psi_edges`), so each holds ~1/bins of it; PSI is
    :func:`psi_from_proportions` of the two samples' shares. NaN when either sample is empty.

    Example::

        rng = np.random.default_rng(0)
        psi(rng.normal(size=10_000), rng.normal(0.5, 1, size=10_000))   # ~0.25: a major shift
    """
    ref = _finite(reference)
    cur = _finite(current)
    if not len(ref) or not len(cur):
        return float("nan")
    edges = psi_edges(ref, bins)
    return psi_from_proportions(proportions(ref, edges), proportions(cur, edges))


def ks(reference: np.ndarray, current: np.ndarray) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov statistic and p-value (``scipy.stats.ks_2samp``, two-sided, its default
    method), NaN values dropped; (nan, nan) when either sample is empty.

    Example::

        ks(np.array([1.0, 2, 3]), np.array([2.5, 3.5]))   # (0.6667, 0.6)
    """
    from scipy.stats import ks_2samp

    ref = _finite(reference)
    cur = _finite(current)
    if not len(ref) or not len(cur):
        return float("nan"), float("nan")
    res = ks_2samp(ref, cur)
    return float(res.statistic), float(res.pvalue)


def _finite(values: Any) -> np.ndarray:
    arr = np.asarray(values, dtype=float).reshape(-1)
    return arr[np.isfinite(arr)]


@dataclass
class Variable:
    """One measured variable: ``pos`` the bar position of each value (ascending), ``values`` finite floats."""

    name: str
    kind: str  # "output" (the signal's scores) or "feature"
    pos: np.ndarray
    values: np.ndarray

    def between(self, first: int, last: int) -> np.ndarray:
        """The values of bar positions ``first … last`` (inclusive)."""
        lo = int(np.searchsorted(self.pos, first, side="left"))
        hi = int(np.searchsorted(self.pos, last, side="right"))
        return self.values[lo:hi]


def _long(pos: np.ndarray, values: np.ndarray, name: str, kind: str) -> Variable:
    keep = np.isfinite(values)
    return Variable(name, kind, pos[keep], values[keep])


def measure_variables(exp: Any, bars: Bars, features: bool = True) -> list[Variable]:
    """The signal's output (pooled over symbols) and, for a :class:`~qf.features.FeatureSource` signal,
    every feature, each with the bar position of its values in ``bars``.

    Example::

        [v.name for v in measure_variables(exp, bars)]   # ['signal', 'ret_1', 'ret_5', ...]
    """
    from qf.pipeline import compute_signal  # lazy: numba

    sig = compute_signal(exp, bars).to_numpy(dtype=float)
    n_t, n_s = sig.shape
    out = [_long(np.repeat(np.arange(n_t), n_s), sig.reshape(-1), "signal", "output")]
    if features:
        frame = feature_frame(exp.signal, bars)
        if frame is not None and len(frame.columns):
            pos = bars.index.get_indexer(pd.DatetimeIndex(frame.index.get_level_values(0)))
            order = np.argsort(pos, kind="stable")
            pos = pos[order]
            values = frame.to_numpy(dtype=float)[order]
            out += [_long(pos, values[:, j], str(c), "feature") for j, c in enumerate(frame.columns)]
    return out


class _RecordingSource:
    """A live :class:`~qf.paper.feed.BarSource` that also keeps every bar it hands out (the monitor's bars)."""

    def __init__(self, source: Any) -> None:
        self._source = source
        self.bars: list[Any] = []

    def poll(self, timeout: float) -> Any:
        new = self._source.poll(timeout)
        if new:
            self.bars.extend(new)
        return new

    def __getattr__(self, name: str) -> Any:
        return getattr(self._source, name)


class DriftMonitor:
    """Measures drift after every processed bar of a paper session (see the module docstring).

    ``history`` is the data loaded before the session's first bar; ``replay`` a replay's whole bars (each
    variable is then computed once over them: row t of a signal uses bars up to t only, the contract
    ``qf validate --lookahead`` checks), or None for a live session (recomputed on the bars so far at
    every bar).

    Example::

        monitor = DriftMonitor(exp, spec, state_dir, bars.iloc(slice(0, start)), replay=bars)
        source, on_update = monitor.watch(source), monitor.wrap(on_update)
    """

    def __init__(self, exp: Any, spec: DriftSpec, state_dir: Path, history: Bars, replay: Bars | None = None) -> None:
        self.exp = exp
        self.spec = spec
        self.dir = Path(state_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.history = history
        self.replay = replay
        self.recorder: _RecordingSource | None = None
        self.cooldown = spec.retrain_cooldown or spec.window
        if spec.retrain_on_drift and not implements(exp.signal, TrainableSignal):
            raise QfError(f"paper.drift.retrain_on_drift: signal {exp.signal.name!r} is not trainable (it has no fit); "
                          "remove retrain_on_drift or use a trainable signal such as xgboost")
        # a resumed session keeps the reference it measured against; one that never measured a bar (refused
        # at start-up, then corrected) takes the settings of this run
        meta = self._read_meta() if len(self._rows()) else {}
        if meta.get("reference_end"):
            ref_end = pd.Timestamp(meta["reference_end"])
        elif spec.reference_end is not None:
            ref_end = pd.Timestamp(spec.reference_end)
        elif len(history.index):
            ref_end = history.index[-1]
        else:
            raise QfError("paper.drift: the session has no bar before its first one to take a reference from; "
                          "set paper.drift.reference_end")
        self.retrains: list[pd.Timestamp] = [pd.Timestamp(t) for t in meta.get("retrains", [])]
        self.ref_end = ref_end
        self._write_meta()
        done = self._rows()
        self.last_done = done["time"].max() if len(done) else None
        self.in_drift: dict[str, bool] = {}
        if len(done):
            last = done[done["time"] == self.last_done]
            self.in_drift = {str(v): bool(d) for v, d in zip(last["variable"], last["drift"], strict=True)}
        base = replay if replay is not None else history
        if spec.window * len(base.symbols) < 5 * spec.bins:
            # an empty bin costs ~0.1 * ln(0.1 / PSI_FLOOR) = 0.69 of PSI: small samples read as drift
            log.warning("paper.drift: a current sample holds at most %d values (window %d x %d symbols) for %d bins; "
                        "PSI is inflated by empty bins: raise window or lower bins", spec.window * len(base.symbols),
                        spec.window, len(base.symbols), spec.bins)
        if self.retrains:  # a resumed session: redo the last refit from its recorded window
            self._refit(base, self.retrains[-1])
        self.variables = measure_variables(exp, base, spec.features) if replay is not None else None
        self.reference = self._reference(base, self.variables or measure_variables(exp, base, spec.features))

    # -- state files -------------------------------------------------------------------------------

    def _read_meta(self) -> dict[str, Any]:
        path = self.dir / META_FILE
        if not path.is_file():
            return {}
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise QfError(f"{path}: cannot read the drift state: {exc}") from None
        return data if isinstance(data, dict) else {}

    def _write_meta(self) -> None:
        doc = {"reference_end": self.ref_end.isoformat(), "retrains": [t.isoformat() for t in self.retrains]}
        tmp = self.dir / (META_FILE + ".tmp")
        tmp.write_text(json.dumps(doc), encoding="utf-8")
        tmp.replace(self.dir / META_FILE)

    def _rows(self) -> pd.DataFrame:
        return read_rows(self.dir)

    def _append(self, name: str, frame: pd.DataFrame) -> None:
        path = self.dir / name
        frame.to_csv(path, mode="a", header=not path.is_file(), index=False, date_format="%Y-%m-%d %H:%M:%S")

    # -- measuring -----------------------------------------------------------------------------------

    def _position(self, bars: Bars, t: pd.Timestamp) -> int:
        """Position of the last bar at or before ``t`` in ``bars``."""
        return int(bars.index.searchsorted(t, side="right")) - 1

    def _reference(self, bars: Bars, variables: list[Variable]) -> dict[str, np.ndarray]:
        # after a refit the reference is its training window, else reference_bars up to reference_end
        span = self.spec.retrain_bars if self.retrains else self.spec.reference_bars
        end = self._position(bars, self.ref_end)
        first = 0 if span is None else max(0, end - span + 1)
        ref = {v.name: v.between(first, end) for v in variables} if end >= 0 else {}
        need = 5 * self.spec.bins
        n_sig = len(ref.get("signal", ()))
        if n_sig < need:
            span = (f"{bars.index[first]:%Y-%m-%d} to {bars.index[end]:%Y-%m-%d}" if end >= 0 else
                    f"ending {self.ref_end:%Y-%m-%d}, before the data")
            raise QfError(f"paper.drift: the reference window ({span}) has {n_sig} finite value(s) of the signal's "
                          f"output, fewer than {need} (5 per bin); set paper.drift.reference_end to a date inside the "
                          "data after the warm-up (a replay starts right after the warm-up) or raise reference_bars")
        empty = [k for k, v in ref.items() if len(v) < need]
        if empty:
            log.warning("drift: %d feature(s) have too few reference values and are not measured (%s)",
                        len(empty), ", ".join(empty[:5]))
        return {k: np.sort(v) for k, v in ref.items() if len(v) >= need}

    def _bars_now(self, t: pd.Timestamp) -> Bars:
        if self.replay is not None:
            return self.replay
        return live_bars(self.history, self.recorder.bars if self.recorder is not None else []).truncate(t)

    def on_bar(self, t: pd.Timestamp) -> str:
        """Measure the bar ``t`` (once; earlier or reference bars are skipped); returns the view's message."""
        t = pd.Timestamp(t)
        if (self.last_done is not None and t <= self.last_done) or t <= self.ref_end:
            return ""
        bars = self._bars_now(t)
        at = self._position(bars, t)
        ref_end = self._position(bars, self.ref_end)
        first = max(at - self.spec.window + 1, ref_end + 1)
        if at - first + 1 < self.spec.window:  # fewer than `window` session bars after the reference yet
            return ""
        variables = self.variables if self.variables is not None else measure_variables(self.exp, bars,
                                                                                        self.spec.features)
        rows, started = [], []
        for v in variables:
            ref = self.reference.get(v.name)
            if ref is None:
                continue
            cur = v.between(first, at)
            p = psi(ref, cur, self.spec.bins)
            stat, pvalue = ks(ref, cur)
            ks_cut = self.spec.ks_pvalue
            drifting = bool(p > self.spec.psi_threshold or (ks_cut is not None and pvalue < ks_cut))
            if drifting and not self.in_drift.get(v.name, False):
                started.append((v.name, p, pvalue))
            self.in_drift[v.name] = drifting
            rows.append((t, v.name, v.kind, p, stat, pvalue, len(ref), len(cur), drifting))
        self._append(ROWS_FILE, pd.DataFrame(rows, columns=COLUMNS))
        self.last_done = t
        if not started:
            return ""
        self._append(EVENTS_FILE, pd.DataFrame({"time": [t] * len(started), "event": "drift",
                                                "symbol": [name for name, _, _ in started]}))
        worst = max(started, key=lambda s: s[1])
        message = f"drift: {worst[0]} PSI {worst[1]:.3f}" + (f" (+{len(started) - 1} more)" if len(started) > 1 else "")
        log.warning("drift at %s: %s", f"{t:%Y-%m-%d}",
                    ", ".join(f"{n} PSI {p:.3f} KS p {q:.3g}" for n, p, q in started))
        if self.spec.retrain_on_drift and self._may_retrain(bars, t):
            self._retrain(bars, t)
            message += "; signal refitted"
        return message

    def _may_retrain(self, bars: Bars, t: pd.Timestamp) -> bool:
        if not self.retrains:
            return True
        return self._position(bars, t) - self._position(bars, self.retrains[-1]) >= self.cooldown

    def _refit(self, bars: Bars, t: pd.Timestamp) -> tuple[pd.Timestamp, pd.Timestamp]:
        at = self._position(bars, t)
        if at < 0:
            raise QfError(f"paper.drift: the refit of {t:%Y-%m-%d} is before the loaded data; remove the state "
                          "folder or load more history (data.params.start)")
        train = bars.iloc(slice(max(0, at - self.spec.retrain_bars + 1), at + 1))
        self.exp.signal.fit(train)
        return train.index[0], train.index[-1]

    def _retrain(self, bars: Bars, t: pd.Timestamp) -> None:
        start, end = self._refit(bars, t)
        log.warning("drift: refitted signal %r on %s to %s (%d bars); the reference is now that window",
                    self.exp.signal.name, f"{start:%Y-%m-%d}", f"{end:%Y-%m-%d}", len(bars.slice(start, end).index))
        self.retrains.append(t)
        self.ref_end = t
        self._write_meta()
        self._append(EVENTS_FILE, pd.DataFrame({"time": [t], "event": ["retrain"], "symbol": [self.exp.signal.name]}))
        if self.replay is not None:
            self.variables = measure_variables(self.exp, self.replay, self.spec.features)
        self.reference = self._reference(bars, self.variables or measure_variables(self.exp, bars, self.spec.features))
        self.in_drift = {}

    # -- wiring into a session ---------------------------------------------------------------------------

    def watch(self, source: Any) -> Any:
        """The source the session should poll: a live one is wrapped so the monitor sees its bars."""
        if self.replay is not None:
            return source
        self.recorder = _RecordingSource(source)
        return self.recorder

    def wrap(self, on_update: Callable[[Any], None] | None) -> Callable[[Any], None]:
        """The session's view callback with the measurement of each processed bar in front of it; a bar that
        raises a drift event shows it in the view's message (the dashboard and status line)."""
        def update(view: Any) -> None:
            if view.event == "bar" and view.time is not None:
                message = self.on_bar(view.time)
                if message:
                    view.message = f"{view.message}; {message}" if view.message else message
            if on_update is not None:
                on_update(view)
        return update


def attach_drift(exp: Any, state_dir: Path, history: Bars, source: Any, on_update: Callable[[Any], None] | None,
                 replay: Bars | None = None) -> tuple[Any, Callable[[Any], None] | None]:
    """``(source, on_update)`` for a session: unchanged without ``paper.drift``, else watched by a
    :class:`DriftMonitor` (the one call :mod:`qf.paper.session` makes).

    Example::

        source, on_update = attach_drift(exp, state_dir, history, source, on_update, replay=bars)
    """
    spec = exp.spec.paper.drift if exp.spec.paper is not None else None
    if spec is None:
        return source, on_update
    monitor = DriftMonitor(exp, spec, state_dir, history, replay)
    return monitor.watch(source), monitor.wrap(on_update)


def live_bars(history: Bars, new: list[Any]) -> Bars:
    """``history`` followed by the live bars ``new`` (:class:`~qf.paper.feed.LiveBar`), later duplicates dropped."""
    if not new:
        return history
    idx = pd.DatetimeIndex([b.time for b in new])
    frames = {}
    for f in history.fields:
        rows = np.array([b.values.get(f, np.full(len(history.symbols), np.nan)) for b in new], dtype=float)
        frame = pd.concat([getattr(history, f), pd.DataFrame(rows, index=idx, columns=history.close.columns)])
        frames[f] = frame[~frame.index.duplicated(keep="first")]
    return Bars(**frames, source=history.source, meta=dict(history.meta))


# -- reading the state folder and writing the report ----------------------------------------------------------

def read_rows(folder: Path) -> pd.DataFrame:
    """The measurements kept in ``folder`` (a state folder or a report): :data:`COLUMNS`, empty when none."""
    path = Path(folder) / ROWS_FILE
    if not path.is_file():
        return pd.DataFrame(columns=COLUMNS)
    try:
        frame = pd.read_csv(path)
    except (OSError, ValueError) as exc:
        raise QfError(f"{path}: cannot read: {exc}") from None
    frame["time"] = pd.to_datetime(frame["time"])
    frame["drift"] = frame["drift"].astype(str).str.lower() == "true"
    return frame


def drift_events(folder: Path) -> pd.DataFrame:
    """The ``drift`` and ``retrain`` events kept in a state folder, as ``risk_events.csv`` rows."""
    path = Path(folder) / EVENTS_FILE
    if not path.is_file():
        return pd.DataFrame(columns=["time", "event", "symbol"])
    frame = pd.read_csv(path)
    frame["time"] = pd.to_datetime(frame["time"])
    return frame[["time", "event", "symbol"]]


def with_drift_events(events: pd.DataFrame, state_dir: Path) -> pd.DataFrame:
    """The session's risk events with its drift events merged in, by time (risk events first within a bar).

    Example::

        with_drift_events(state.events(), state_dir)   # ... 2021-03-04 drift signal ...
    """
    extra = drift_events(state_dir)
    if not len(extra):
        return events
    merged = pd.concat([events, extra], ignore_index=True) if len(events) else extra.reset_index(drop=True)
    merged["time"] = pd.to_datetime(merged["time"])
    return merged.sort_values("time", kind="mergesort", ignore_index=True)


def summary(rows: pd.DataFrame, events: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per variable: bars measured, bars drifting, drift events, max PSI (and when), last PSI / KS."""
    if not len(rows):
        return pd.DataFrame(columns=["variable", "kind", "bars", "drifting_bars", "events", "max_psi", "max_psi_at",
                                     "last_psi", "last_ks_stat", "last_ks_pvalue"])
    out = []
    for name, g in rows.groupby("variable", sort=False):
        worst = g.loc[g["psi"].idxmax()] if g["psi"].notna().any() else g.iloc[-1]
        n_events = int(((events["event"] == "drift") & (events["symbol"] == name)).sum()) if events is not None else 0
        last = g.iloc[-1]
        out.append({"variable": name, "kind": last["kind"], "bars": len(g), "drifting_bars": int(g["drift"].sum()),
                    "events": n_events, "max_psi": float(worst["psi"]), "max_psi_at": f"{worst['time']:%Y-%m-%d}",
                    "last_psi": float(last["psi"]), "last_ks_stat": float(last["ks_stat"]),
                    "last_ks_pvalue": float(last["ks_pvalue"])})
    frame = pd.DataFrame(out)
    # the signal first, then the features that drifted most
    frame["_o"] = frame["kind"] != "output"
    return frame.sort_values(["_o", "max_psi"], ascending=[True, False], kind="mergesort").drop(columns="_o")


def write_drift_report(state_dir: Path, folder: Path, until: pd.Timestamp | None = None,
                       spec: DriftSpec | None = None) -> bool:
    """Write ``drift.csv`` and ``drift.html`` into the report ``folder`` from the session's state folder
    (measurements up to ``until``); False (nothing written) when the session measured nothing.

    Example::

        write_drift_report(state.path.parent, report_dir, equity.index[-1], exp.spec.paper.drift)
    """
    rows = read_rows(state_dir)
    if not len(rows) and not (Path(state_dir) / META_FILE).is_file():
        return False
    events = drift_events(state_dir)
    if until is not None:
        rows = rows[rows["time"] <= until]
        events = events[events["time"] <= until]
    rows.to_csv(Path(folder) / ROWS_FILE, index=False, date_format="%Y-%m-%d %H:%M:%S")
    meta = json.loads((Path(state_dir) / META_FILE).read_text()) if (Path(state_dir) / META_FILE).is_file() else {}
    (Path(folder) / "drift.html").write_text(drift_page(rows, events, spec, meta), encoding="utf-8")

    add_section(Path(folder) / "tearsheet.html", "drift", tearsheet_section(rows, events))
    return True


def tearsheet_section(rows: pd.DataFrame, events: pd.DataFrame) -> str:
    """The drift summary the paper tear sheet shows (the five most drifted variables), linking drift.html."""
    head = "<h2>Drift (PSI / KS per bar)</h2>"
    if not len(rows):
        return head + '<p>No bar measured yet. <a href="drift.html">drift.html</a></p>'
    table = summary(rows, events).head(6)
    n_events = int((events["event"] == "drift").sum()) if len(events) else 0
    n_refits = int((events["event"] == "retrain").sum()) if len(events) else 0
    cols = ["variable", "bars", "drifting_bars", "events", "max_psi", "max_psi_at", "last_psi", "last_ks_pvalue"]
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(r[c]))}</td>" for c in cols) + "</tr>"
                   for r in table.to_dict("records"))
    return (f"{head}<p>{rows['time'].nunique()} bar(s) measured, {n_events} drift event(s)"
            + (f", {n_refits} refit(s)" if n_refits else "") + '; every variable and the PSI per bar: '
            '<a href="drift.html">drift.html</a>.</p><table><thead><tr>'
            + "".join(f"<th>{c}</th>" for c in cols) + f"</tr></thead><tbody>{body}</tbody></table>")


def _fmt(v: Any, digits: int = 4) -> str:
    if isinstance(v, float | np.floating):
        return "n/a" if not math.isfinite(v) else f"{v:.{digits}g}"
    return str(v)


def drift_page(rows: pd.DataFrame, events: pd.DataFrame, spec: DriftSpec | None, meta: dict[str, Any]) -> str:
    """The report's drift page: settings, per-variable summary, events, PSI per bar of the signal and the
    five features that drifted most."""
    import plotly.graph_objects as go

    parts = ["<h1>Drift (PSI / KS per bar)</h1>"]
    if spec is not None:
        parts.append(f'<p class="note">PSI over {spec.bins} quantile bins of the reference (proportions floored at '
                     f"{PSI_FLOOR:g}); two-sample KS (scipy ks_2samp). Current sample: the trailing {spec.window} "
                     f"session bars; reference: {spec.reference_bars or 'all'} bars ending "
                     f"{html.escape(str(meta.get('reference_end', '?'))[:10])}. Drift: PSI &gt; {spec.psi_threshold:g}"
                     + (f" or KS p &lt; {spec.ks_pvalue:g}" if spec.ks_pvalue is not None else "")
                     + (f"; retrain on drift (trailing {spec.retrain_bars} bars)" if spec.retrain_on_drift else "")
                     + ".</p>")
    if not len(rows):
        parts.append('<p class="warn">No bar was measured yet (the first measurement needs `window` session bars '
                     "after the reference window).</p>")
        return html_page("drift", "\n".join(parts))
    table = summary(rows, events)
    head = "".join(f"<th>{html.escape(c)}</th>" for c in table.columns)
    body = "".join("<tr>" + "".join(f'<td class="{"l" if i == 0 else "num"}">{html.escape(_fmt(v))}</td>'
                                    for i, v in enumerate(r)) + "</tr>" for r in table.itertuples(index=False))
    parts += ["<h2>Per variable</h2>", f'<table class="qf"><tr>{head}</tr>{body}</table>']
    if len(events):
        ev = "".join(f'<tr><td class="l">{t:%Y-%m-%d}</td><td class="l">{html.escape(str(e))}</td>'
                     f'<td class="l">{html.escape(str(s))}</td></tr>'
                     for t, e, s in events[["time", "event", "symbol"]].itertuples(index=False))
        parts += ["<h2>Events</h2>", f'<table class="qf"><tr><th class="l">time</th><th class="l">event</th>'
                  f'<th class="l">variable</th></tr>{ev}</table>']
    fig = go.Figure()
    shown = list(table["variable"][:6])
    for name in shown:
        g = rows[rows["variable"] == name]
        fig.add_trace(go.Scatter(x=g["time"], y=g["psi"], mode="lines", name=name))
    if spec is not None:
        fig.add_hline(y=spec.psi_threshold, line={"dash": "dot", "color": "#c00"})
    fig.update_layout(title="PSI per bar (the signal and the most drifted features)", height=380,
                      hovermode="x unified", legend={"orientation": "h", "y": -0.2})
    parts.append(figure_div(fig))
    return html_page("drift", "\n".join(parts), plotly_js())
