"""Look-ahead and warm-up probes: does row t of a component depend on bars after t, or on bars before
the trailing window paper trading gives it?

Two contracts, both checked by re-running a component on less data and comparing one row:

- **no look-ahead**: row t computed on the bars up to t equals row t of the full-history run;
- **warmup**: row t computed on the trailing ``history`` bars ending at t (what a live paper session
  loads: :func:`qf.components.history_of`, ``warmup + 1`` unless the component declares more) equals
  row t of the full-history run. A path-dependent model (one whose state at t depends on where the
  history starts) breaks it unless it declares ``history = None`` (the session then loads the whole
  available history, and there is no trailing window to check): paper trading would decide
  differently from the backtest.

Which dates are probed: every row where the full-history output changes (a one-bar peek usually shows
on the day a position opens or closes), plus ``points`` seeded random rows (leaks that never change
the output there), plus a few fixed rows (the first row after the warm-up, the last row). On a long
history the change rows are capped at ``max_probes`` in all, sampled with a seeded generator, so a check
costs at most ``max_probes`` re-runs and gives the same answer every time.

The per-date probes are used by :mod:`qf.testing.contracts` (the ``assert_*`` checks for plugin tests)
and by :func:`check_experiment` (``qf validate --lookahead`` and ``execution.check_lookahead``), which
runs them on an experiment's real data with its real signal, sizer and stateless risk rules.

Example::

    from qf.config.loader import load_experiment
    from qf.lookahead import check_experiment

    report = check_experiment(load_experiment("experiments/sma_cross.yaml"))
    report.ok, report.probes, [f.message() for f in report.findings]
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from qf.components import TrainableSignal, history_of, implements
from qf.errors import QfError
from qf.pipeline import apply_weights, compute_signal
from qf.rebalance import rebalance_dates

if TYPE_CHECKING:
    from qf.bars import Bars
    from qf.config.loader import LoadedExperiment

TOL = 1e-9
# seeded random probe rows added to the change rows; with the change rows this caught every planted leak
# of tests/testing/test_lookahead_guard.py in 20 of 20 seeded trials (5 evenly spaced rows caught 1-9)
RANDOM_PROBES = 30
# a bound on re-runs per check, so long histories stay fast; change rows beyond it are sampled
MAX_PROBES = 120

Kind = Literal["lookahead", "warmup", "path"]

__all__ = [
    "MAX_PROBES",
    "RANDOM_PROBES",
    "TOL",
    "Finding",
    "LookaheadError",
    "LookaheadReport",
    "LookaheadWarning",
    "change_positions",
    "check_experiment",
    "compare_rows",
    "fmt_date",
    "guard_run",
    "mismatch",
    "probe_positions",
    "who",
]


class LookaheadError(QfError):
    """A component failed the look-ahead or warm-up check on an experiment's data (exit code 1: the
    experiment is valid, the check found a problem in a component).

    Example::

        raise LookaheadError("signal 'peek' looks ahead: on 2020-03-02 AAPL is 0.0 ...")
    """

    exit_code = 1


def who(component: Any) -> str:
    """How messages name a component: its kind and YAML name, e.g. ``signal 'sma_cross'``."""
    name = getattr(component, "name", "") or type(component).__name__
    return f"{getattr(component, 'kind', '') or 'component'} {name!r}"


def fmt_date(ts: Any) -> str:
    """``2020-03-02`` for a daily timestamp, the full ISO time otherwise."""
    ts = pd.Timestamp(ts)
    return ts.strftime("%Y-%m-%d") if ts == ts.normalize() else ts.isoformat()


def mismatch(a: np.ndarray, b: np.ndarray, tol: float) -> np.ndarray:
    """Element-wise: True where a and b differ (NaN equals NaN; tolerance absolute plus relative).

    Example::

        mismatch(np.array([1.0, np.nan]), np.array([1.0 + 1e-12, np.nan]), 1e-9)   # array([False, False])
    """
    nan_a, nan_b = np.isnan(a), np.isnan(b)
    with np.errstate(invalid="ignore"):
        far = np.abs(a - b) > tol * (1.0 + np.maximum(np.abs(a), np.abs(b)))
    return (nan_a != nan_b) | (~nan_a & ~nan_b & far)


@dataclass(frozen=True)
class Finding:
    """One row where a component's re-run on less data disagrees with its full-history run.

    ``kind``: ``lookahead`` (row t changes when the bars after t are removed), ``warmup`` (row t changes
    when only the trailing ``window`` bars are given) or ``path`` (a sizer's row t changes when it is
    asked for date t alone, as paper trading asks, instead of every rebalance date up to t).

    Example::

        Finding("signal 'peek'", "lookahead", pd.Timestamp("2020-03-02"), "AAPL", 0.0, 1.0, 1).message()
    """

    who: str
    kind: Kind
    date: pd.Timestamp
    symbol: str
    part: float
    full: float
    differ: int
    window: int | None = None

    def message(self) -> str:
        d = fmt_date(self.date)
        n = f"({self.differ} symbol(s) differ)"
        if self.kind == "lookahead":
            return (f"{self.who} looks ahead: on {d} {self.symbol} is {self.part!r} with data up to {d} but "
                    f"{self.full!r} with the full history {n}")
        if self.kind == "warmup":
            return (f"{self.who} breaks its warmup contract: on {d} {self.symbol} is {self.part!r} computed on the "
                    f"last {self.window} bars (its declared history, warmup + 1 by default: what paper trading "
                    f"loads) but {self.full!r} with the full history {n}; paper trading would decide differently "
                    "from the backtest: declare the history row t needs (`history`, None for the whole history), "
                    "or make row t depend on the last warmup + 1 bars only")
        return (f"{self.who} depends on earlier rebalance dates: on {d} {self.symbol} is {self.part!r} when sized "
                f"for that date alone (as paper trading does) but {self.full!r} when sized with every rebalance "
                f"date up to it {n}")


def compare_rows(full: pd.Series, part: pd.Series, tol: float = TOL) -> tuple[str, float, float, int] | None:
    """The first symbol where ``part`` differs from ``full`` (NaN-aware, within ``tol``), as
    ``(symbol, part_value, full_value, n_differing)``, or None when the rows agree.

    Example::

        compare_rows(pd.Series({"A": 1.0, "B": 2.0}), pd.Series({"A": 1.0, "B": 3.0}))  # ('B', 3.0, 2.0, 1)
    """
    a = full.to_numpy(dtype=float)
    b = part.reindex(full.index).to_numpy(dtype=float)
    bad = mismatch(a, b, tol)
    if not bad.any():
        return None
    k = int(np.argmax(bad))
    return str(full.index[k]), float(b[k]), float(a[k]), int(bad.sum())


def change_positions(frame: pd.DataFrame, tol: float = TOL) -> np.ndarray:
    """Row positions where ``frame`` differs from the row before (NaN-aware); row 0 counts when it has a
    value. These are the dates a leak is most likely to show on: entries, exits, re-weightings.

    Example::

        change_positions(pd.DataFrame({"A": [np.nan, 0, 0, 1, 1]}))   # array([1, 3])
    """
    values = frame.to_numpy(dtype=float)
    if len(values) == 0:
        return np.empty(0, dtype=int)
    changed = np.zeros(len(values), dtype=bool)
    changed[0] = bool((~np.isnan(values[0])).any())
    if len(values) > 1:
        changed[1:] = mismatch(values[1:], values[:-1], tol).any(axis=1)
    return np.flatnonzero(changed)


def probe_positions(
    n: int,
    changes: Iterable[int] = (),
    *,
    points: int = RANDOM_PROBES,
    max_probes: int = MAX_PROBES,
    seed: int = 0,
    always: Iterable[int] = (),
    start: int = 0,
) -> list[int]:
    """Row positions to probe among ``start .. n - 1``, sorted.

    Every position of ``always`` and of ``changes``, plus ``points`` seeded random positions; when that is
    more than ``max_probes``, ``always`` and the random positions are kept and the change positions are
    sampled down (seeded, so the same rows every time). When the output changes on more than half the
    rows (a continuous score), the change rows single nothing out and only the random rows are probed:
    a leak in such a score shows on most rows.

    Example::

        probe_positions(300, changes=[10, 50, 51], points=5, always=[299])   # 3 + 1 + 5 positions
    """
    if n <= start:
        return []
    rng = np.random.default_rng(seed)
    musts = {int(p) for p in always if start <= p < n}
    in_range = {int(p) for p in changes if start <= p < n}
    if len(in_range) > (n - start) / 2:
        in_range = set()
    rest = np.array(sorted(in_range - musts), dtype=int)
    budget = max(max_probes - len(musts), 0)
    n_random = min(max(points, 0), budget)
    n_changes = min(len(rest), budget - n_random)
    if n_changes < len(rest):
        rest = rng.choice(rest, size=n_changes, replace=False)
    chosen = musts | {int(p) for p in rest}
    free = np.array(sorted(set(range(start, n)) - chosen), dtype=int)
    if n_random and len(free):
        chosen |= {int(p) for p in rng.choice(free, size=min(n_random, len(free)), replace=False)}
    return sorted(chosen)


# --- per-date probes: each returns a Finding, or None when the row agrees ------------------------------


def _row(frame: Any, t: pd.Timestamp, whom: str, what: str) -> pd.Series:
    if not isinstance(frame, pd.DataFrame) or t not in frame.index:
        raise AssertionError(f"{whom}: the {what} has no row for {fmt_date(t)}")
    return frame.loc[t]


def _finding(whom: str, kind: Kind, t: pd.Timestamp, diff: tuple[str, float, float, int] | None,
             window: int | None = None) -> Finding | None:
    return None if diff is None else Finding(whom, kind, t, *diff, window=window)


def signal_lookahead_at(model: Any, bars: Bars, full: pd.DataFrame, pos: int, tol: float = TOL) -> Finding | None:
    """Row ``pos`` of ``model`` on the bars up to it, against ``full`` (its full-history signal)."""
    t = bars.index[pos]
    part = model.compute(bars.iloc(slice(0, pos + 1)))
    return _finding(who(model), "lookahead", t, compare_rows(full.loc[t], _row(part, t, who(model), "signal "
                    f"computed on bars up to {fmt_date(t)}"), tol))


def signal_warmup_at(model: Any, bars: Bars, full: pd.DataFrame, pos: int, warmup: int,
                     tol: float = TOL) -> tuple[Finding | None, pd.DataFrame]:
    """Row ``pos`` of ``model`` on the trailing ``warmup + 1`` bars, against ``full``; also returns the
    signal computed on that window (what a paper session's sizer is given)."""
    t = bars.index[pos]
    part = model.compute(bars.iloc(slice(pos - warmup, pos + 1)))
    row = _row(part, t, who(model), f"signal computed on the {warmup + 1} bars up to {fmt_date(t)}")
    return _finding(who(model), "warmup", t, compare_rows(full.loc[t], row, tol), warmup + 1), part


def sizer_lookahead_at(sizer: Any, signal: pd.DataFrame, bars: Bars, dates: pd.DatetimeIndex, full: pd.DataFrame,
                       k: int, tol: float = TOL, *, alone: bool = False) -> Finding | None:
    """Weights for ``dates[k]`` from the signal, bars and rebalance dates up to it, against ``full``.

    With ``alone`` the sizer is first asked for ``dates[k]`` only (as paper trading asks, and cheap on a
    long daily schedule); only when that disagrees is it asked again with every date up to ``dates[k]``,
    to tell a look-ahead (still different) from a dependence on earlier rebalance dates (``path``).
    """
    t = dates[k]
    pos = int(bars.index.get_loc(t))
    sig, cut = signal.loc[:t], bars.iloc(slice(0, pos + 1))
    whom = who(sizer)
    what = f"weights computed on data up to {fmt_date(t)}"
    if alone:
        diff = compare_rows(full.loc[t], _row(sizer.size(sig, cut, dates[k:k + 1]), t, whom, what), tol)
        if diff is None:
            return None
    diff_all = compare_rows(full.loc[t], _row(sizer.size(sig, cut, dates[: k + 1]), t, whom, what), tol)
    if diff_all is not None:
        return _finding(whom, "lookahead", t, diff_all)
    return _finding(whom, "path", t, diff if alone else None)


def sizer_warmup_at(sizer: Any, signal: pd.DataFrame, bars: Bars, full: pd.DataFrame, t: pd.Timestamp,
                    warmup: int, tol: float = TOL) -> tuple[Finding | None, pd.DataFrame]:
    """Weights for ``t`` from the trailing ``warmup + 1`` bars and ``signal`` (already cut to them, or
    longer: it is cut here), for date ``t`` alone, against ``full``; also returns those weights."""
    pos = int(bars.index.get_loc(t))
    window = bars.iloc(slice(pos - warmup, pos + 1))
    part = sizer.size(signal.loc[window.index[0]:t], window, pd.DatetimeIndex([t]))
    row = _row(part, t, who(sizer), f"weights computed on the {warmup + 1} bars up to {fmt_date(t)}")
    return _finding(who(sizer), "warmup", t, compare_rows(full.loc[t], row, tol), warmup + 1), part


def rule_lookahead_at(rule: Any, weights: pd.DataFrame, bars: Bars, full: pd.DataFrame, k: int,
                      tol: float = TOL) -> Finding | None:
    """A stateless rule's output for ``weights.index[k]`` from the weights and bars up to it, against
    ``full`` (its output on everything)."""
    t = weights.index[k]
    pos = int(bars.index.get_loc(t))
    part = rule.apply(weights.iloc[: k + 1], bars.iloc(slice(0, pos + 1)))
    row = _row(part, t, who(rule), f"output on data up to {fmt_date(t)}")
    return _finding(who(rule), "lookahead", t, compare_rows(full.loc[t], row, tol))


# --- the experiment-level check ----------------------------------------------------------------------


@dataclass
class LookaheadReport:
    """What :func:`check_experiment` probed and found: at most one finding per component, the most basic
    (look-ahead, then rebalance-path dependence, then warmup) at its first date."""

    probes: int = 0
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    bars: int = 0
    symbols: int = 0

    @property
    def ok(self) -> bool:
        return not self.findings

    def lookahead(self) -> list[Finding]:
        """The findings that mean the backtest itself used the future."""
        return [f for f in self.findings if f.kind == "lookahead"]

    def raise_for(self, kinds: Sequence[Kind] = ("lookahead", "warmup", "path")) -> None:
        """Raise :class:`LookaheadError` listing every finding of ``kinds``, if any."""
        bad = [f.message() for f in self.findings if f.kind in kinds]
        if bad:
            raise LookaheadError(bad[0], bad)


Progress = Callable[[str, int, int], None]


def _noop(_: str, __: int, ___: int) -> None:
    return None


@dataclass
class _Stage:
    label: str
    items: list[Any]
    probe: Callable[[Any], None]
    date_of: Callable[[Any], pd.Timestamp]


def check_experiment(exp: LoadedExperiment, bars: Bars | None = None, *, points: int = RANDOM_PROBES,
                     max_probes: int = MAX_PROBES, seed: int = 0, tol: float = TOL,
                     progress: Progress = _noop) -> LookaheadReport:
    """Run the look-ahead and warm-up probes on ``exp``'s data (loaded unless ``bars`` is given) with its
    signal, sizer and stateless risk rules, in the order the pipeline runs them.

    Look-ahead: the signal at its change dates plus random dates; the sizer at the rebalance dates where
    the weights or the signal change plus random ones (each rule likewise on its input weights). Warm-up:
    at the same rebalance dates, the whole decision is recomputed from the trailing window a paper session
    loads (the longer of the signal's and the sizer's declared ``history``, see
    :func:`qf.components.history_of`; none when either is ``None``) and the first stage that disagrees
    is reported. ``progress(label, done, total)`` is called after every probe.

    Example::

        report = check_experiment(load_experiment("experiments/sma_cross.yaml"))
        report.raise_for(["lookahead"])     # LookaheadError naming component, date and symbol
    """
    report = LookaheadReport()
    if bars is None:
        progress("loading data", 0, 0)
        bars = exp.data.load()
    report.bars, report.symbols = len(bars.index), len(bars.symbols)
    model, sizer = exp.signal, exp.sizer
    _fit_if_trainable(exp, bars, report, progress)
    progress("computing the full-history pipeline", 0, 0)
    signal = compute_signal(exp, bars)
    dates = rebalance_dates(bars.index, exp.spec.rebalance)
    weights, _ = apply_weights(exp, signal, bars, dates)  # the pipeline's own checks of every frame first
    rules = [r for r in exp.risk if not r.stateful]
    stage_in, stage_out = [], []  # input and output weights of each stateless rule, full history
    current = weights
    for rule in rules:
        stage_in.append(current)
        current = rule.apply(current, bars)
        stage_out.append(current)
    skipped = [r.name for r in exp.risk if r.stateful]
    if skipped:
        report.notes.append(f"stateful risk rules ({', '.join(skipped)}) act in the simulation on past equity "
                            "only; they are not probed")

    n, warm = len(bars.index), max(int(model.warmup), int(sizer.warmup), 0)
    # the live window: the longer of the two declared histories; None (path-dependent) = the whole history,
    # which the look-ahead probes already cover
    histories = [history_of(model), history_of(sizer)]
    window = None if None in histories else max(h for h in histories if h is not None)
    if window is None:
        path_dep = [who(c) for c, h in zip((model, sizer), histories, strict=True) if h is None]
        report.notes.append(f"{' and '.join(path_dep)} {'declares' if len(path_dep) == 1 else 'declare'} history "
                            "None (path-dependent): paper trading loads the whole available history, so there is "
                            "no trailing window to check")
    live = window - 1 if window is not None else n  # rows before the decision bar in the live window
    date_pos = bars.index.get_indexer(dates)
    sig_changes = change_positions(signal, tol)
    sig_probes = probe_positions(n, sig_changes, points=points, max_probes=max_probes, seed=seed,
                                 always=[int(model.warmup), n - 1])
    # rebalance rows where the weights change, or where the signal changed since the previous decision
    sig_at = signal.reindex(dates)
    dec_changes = set(change_positions(weights, tol)) | set(change_positions(sig_at, tol))
    first_live = int(np.searchsorted(date_pos, warm))
    dec_probes = probe_positions(len(dates), dec_changes, points=points, max_probes=max_probes, seed=seed + 1,
                                 always=[first_live, len(dates) - 1])
    warm_probes = [k for k in dec_probes if live <= date_pos[k]]

    found: dict[tuple[str, Kind], Finding] = {}

    def note(f: Finding | None) -> bool:
        if f is not None and (f.who, f.kind) not in found:
            found[(f.who, f.kind)] = f
        return f is not None

    def sig_probe(pos: int) -> None:
        if (who(model), "lookahead") not in found:
            note(signal_lookahead_at(model, bars, signal, pos, tol))

    def sizer_probe(k: int) -> None:
        if (who(sizer), "lookahead") not in found:
            note(sizer_lookahead_at(sizer, signal, bars, dates, weights, k, tol, alone=True))

    def rule_probe(i: int) -> Callable[[int], None]:
        def probe(k: int) -> None:
            if (who(rules[i]), "lookahead") not in found:
                note(rule_lookahead_at(rules[i], stage_in[i], bars, stage_out[i], k, tol))
        return probe

    def warm_probe(k: int) -> None:
        # the live decision, stage by stage; the first stage that disagrees is the one to blame
        pos = int(date_pos[k])
        t = dates[k]
        f, sig_w = signal_warmup_at(model, bars, signal, pos, live, tol)
        if note(f):
            return
        f, w = sizer_warmup_at(sizer, sig_w, bars, weights, t, live, tol)
        if note(f):
            return
        trailing = bars.iloc(slice(pos - live, pos + 1))
        for i, rule in enumerate(rules):
            w = rule.apply(w, trailing)
            diff = compare_rows(stage_out[i].loc[t], _row(w, t, who(rule), "output"), tol)
            if note(_finding(who(rule), "warmup", t, diff, live + 1)):
                return

    def bar_date(pos: int) -> pd.Timestamp:
        return bars.index[pos]

    def decision_date(k: int) -> pd.Timestamp:
        return dates[k]

    stages = [_Stage(f"look-ahead: {who(model)}", sig_probes, sig_probe, bar_date),
              _Stage(f"look-ahead: {who(sizer)}", dec_probes, sizer_probe, decision_date)]
    stages += [_Stage(f"look-ahead: {who(r)}", dec_probes, rule_probe(i), decision_date) for i, r in enumerate(rules)]
    stages.append(_Stage(f"warmup ({live + 1} trailing bars)", warm_probes, warm_probe, decision_date))
    total = sum(len(s.items) for s in stages)
    done = 0
    for stage in stages:
        for item in stage.items:
            try:
                stage.probe(item)
            except QfError:
                raise
            except Exception as exc:  # a third-party component that breaks on a shorter history: say where
                raise LookaheadError(f"{stage.label}: the probe on {fmt_date(stage.date_of(item))} failed: "
                                     f"{type(exc).__name__}: {exc}") from exc
            done += 1
            progress(stage.label, done, total)
    report.probes = total
    # one finding per component, the most basic: a component that looks ahead (or needs the earlier
    # rebalance dates) also disagrees on its trailing window, and that is not news
    order = {"lookahead": 0, "path": 1, "warmup": 2}
    first: dict[str, Finding] = {}
    for f in sorted(found.values(), key=lambda f: (order[f.kind], f.date)):
        first.setdefault(f.who, f)
    report.findings = sorted(first.values(), key=lambda f: (order[f.kind], f.date))
    return report


def _fit_if_trainable(exp: LoadedExperiment, bars: Bars, report: LookaheadReport, progress: Progress) -> None:
    """A trainable signal (``fit``) without a model is fitted on the first walk-forward train window, so
    the check probes its features and predictions as a walk-forward fold would use them."""
    model = exp.signal
    # ``fitted`` is not part of the protocol: a model without it counts as ready (e.g. loaded from a file)
    if not implements(model, TrainableSignal) or getattr(model, "fitted", True) is not None:
        return
    wf = exp.spec.walk_forward
    if wf is None:
        return  # computing will say that the model needs training or a model_path
    train = min(wf.train, len(bars.index))
    progress(f"fitting {who(model)} on the first {train} bars", 0, 0)
    model.fit(bars.iloc(slice(0, train)))
    report.notes.append(f"{who(model)} was fitted on the first walk-forward train window ({train} bars) "
                        "and probed on the whole history")


class LookaheadWarning(UserWarning):
    """A warm-up (or rebalance-path) finding of ``execution.check_lookahead``: the backtest is sound, but
    paper trading would decide differently from it on the date named."""


def guard_run(exp: LoadedExperiment, bars: Bars, step: Callable[[str], None] | None = None) -> LookaheadReport:
    """What ``execution.check_lookahead: true`` does before ``qf run`` simulates: :func:`check_experiment`
    on the run's bars; a look-ahead finding stops the run (:class:`LookaheadError`, exit code 1), a
    warm-up or rebalance-path finding is a :class:`LookaheadWarning` (the backtest itself is sound).

    Example::

        guard_run(exp, exp.data.load())    # raises LookaheadError: signal 'x' looks ahead: on ...
    """
    import warnings

    def progress(label: str, done: int, total: int) -> None:
        if step is not None:
            step(f"checking for look-ahead: {label}" + (f" ({done}/{total})" if total else ""))

    report = check_experiment(exp, bars, progress=progress)
    report.raise_for(["lookahead"])
    for finding in report.findings:
        warnings.warn(LookaheadWarning(finding.message()), stacklevel=2)
    return report
