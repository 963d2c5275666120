"""Stateful risk rules composed into the one risk step every engine runs at each decision bar.

A stateful rule (:class:`qf.components.StatefulRiskRule`) brings a plain-Python ``step`` function with the
signature :data:`SIG`; :func:`compile_step` compiles it with ``numba.cfunc(SIG, cache=True)``.
:func:`compose` turns the rules of an experiment into a :class:`RiskStack`: the compiled steps' addresses,
every rule's parameters and state laid out in flat arrays, and the per-bar inputs the rules compute from the
bars. :func:`risk_step_nb` (called by :func:`qf.engines.kernels.step.decide_costed_nb` in the vectorbt
kernel, the backtrader strategy and paper trading) calls each rule in order: any rule returning
:data:`FLATTEN` flattens everything, and each rule may close single positions through ``exits``.

Why addresses: a kernel that takes numba dispatchers, or even tuples of cfuncs, as arguments is either
recompiled in every process or pays ~1 ms of argument typing per call from Python (the backtrader and
paper strategies call the step once per bar). An ``int64`` table of cfunc addresses is a plain array: the
kernels are compiled once, cached on disk, and called at numpy-argument speed. :func:`_as_step` turns an
address back into a numba first-class function of type ``FunctionType(SIG)``; the table keeps the cfunc
objects (and so their code) alive through :attr:`RiskStack.steps`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numba as nb
import numpy as np
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from qf.components import RuleStatus, StatefulRiskRule, history_of
from qf.errors import QfError

if TYPE_CHECKING:
    from qf.bars import Bars

FLATTEN, KEEP = 1, 0

#: The one signature of a stateful rule's ``step`` (see :class:`qf.components.StatefulRiskRule`):
#: ``step(equity, close, position, avg_price, inputs, params, state, symbol_state, exits) -> int``.
SIG = types.int64(
    types.float64,  # equity: the portfolio's value at the decision bar's close
    types.float64[::1],  # close[n]: each symbol's close at the decision bar (its last real close through gaps)
    types.float64[::1],  # position[n]: signed units held
    types.float64[::1],  # avg_price[n]: average entry price of the position (NaN when flat)
    types.float64[:, ::1],  # inputs[j, n]: the rule's per-bar inputs at the decision bar
    types.float64[::1],  # params[p]: the rule's parameters
    types.float64[::1],  # state[s]: the rule's portfolio-level state (kept between bars)
    types.float64[:, ::1],  # symbol_state[j, n]: the rule's per-symbol state (kept between bars)
    types.boolean[::1],  # exits[n]: set True to close symbol n (never set False: another rule may have set it)
)
_STEP_TYPE = types.FunctionType(SIG)

# columns of the rule table (one int64 row per rule)
R_ADDR, R_P0, R_P1, R_S0, R_S1, R_Q0, R_QROWS, R_K0, R_K1 = range(9)
TABLE_COLUMNS = 9


@intrinsic
def _as_step(typingctx: Any, addr: Any) -> Any:
    """The cfunc at ``addr`` as a numba first-class function of :data:`SIG` (its C entry point)."""

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        fn = cgutils.create_struct_proxy(_STEP_TYPE)(context, builder)  # zero-filled: no jit or Python address
        fn.c_addr = builder.inttoptr(args[0], context.get_value_type(types.voidptr))
        return fn._getvalue()

    return _STEP_TYPE(types.int64), codegen


@nb.njit(cache=True)
def risk_step_nb(equity: float, close: np.ndarray, position: np.ndarray, avg_price: np.ndarray, inputs: np.ndarray,
                 rules: np.ndarray, params: np.ndarray, state: np.ndarray,
                 exits: np.ndarray) -> int:  # pragma: no cover - numba
    """Run every rule of the table ``rules`` (see :meth:`RiskStack.table`) at one decision bar.

    ``inputs`` is the bar's ``[K, N]`` slice of :meth:`RiskStack.inputs`, ``params`` :attr:`RiskStack.params`
    and ``state`` the flat state of :meth:`RiskStack.new_state` (updated in place). Returns :data:`FLATTEN`
    when any rule says so, else :data:`KEEP`; ``exits[n]`` is True for every position a rule closes.
    """
    n = position.shape[0]
    for k in range(n):
        exits[k] = False
    action = KEEP
    if rules.shape[0] == 0:
        return action
    # the rules get float64 copies: none can change what the engine sees, and a read-only array (pandas'
    # under copy-on-write) or integer prices still fit SIG's writable float arrays
    close = close.astype(np.float64)
    position = position.astype(np.float64)
    avg_price = avg_price.astype(np.float64)
    inputs = inputs.astype(np.float64)
    for r in range(rules.shape[0]):
        step = _as_step(rules[r, R_ADDR])
        q0 = rules[r, R_Q0]
        rows = rules[r, R_QROWS]
        symbol_state = state[q0:q0 + rows * n].reshape((rows, n))
        if step(equity, close, position, avg_price, inputs[rules[r, R_K0]:rules[r, R_K1]],
                params[rules[r, R_P0]:rules[r, R_P1]], state[rules[r, R_S0]:rules[r, R_S1]], symbol_state,
                exits) == FLATTEN:
            action = FLATTEN
    return action


_COMPILED: dict[Callable[..., Any], Any] = {}


def compile_step(step: Callable[..., Any], who: str = "stateful risk rule") -> Any:
    """``numba.cfunc(SIG, cache=True)(step)``, once per process; a step that does not compile is a
    :class:`qf.errors.QfError` naming ``who``.

    Example::

        cf = compile_step(DrawdownHalt.step)
        cf.address   # what the kernels call
    """
    cf = _COMPILED.get(step)
    if cf is None:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", nb.NumbaWarning)
                try:
                    cf = nb.cfunc(SIG, cache=True)(step)
                except RuntimeError as exc:
                    if "no locator available" not in str(exc):
                        raise
                    # defined without a source file (a notebook, exec'd code): compiled, not cached on disk
                    cf = nb.cfunc(SIG)(step)
        except Exception as exc:  # numba's typing errors are long: their first two lines name the problem
            lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()][:2] or [type(exc).__name__]
            raise QfError(f"{who}: step() does not compile with numba.cfunc(qf.engines.kernels.risk.SIG): "
                          f"{' '.join(lines)}") from exc
        _COMPILED[step] = cf
    return cf


def _sizes(rule: StatefulRiskRule) -> tuple[int, int, int]:
    """(state_size, symbol_state_size, n_inputs) of a rule, checked."""
    out = []
    for attr in ("state_size", "symbol_state_size", "n_inputs"):
        v = getattr(rule, attr)
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
            raise QfError(f"risk rule {rule.name!r}: {attr} must be a whole number >= 0, got {v!r}")
        out.append(int(v))
    return out[0], out[1], out[2]


def _floats(values: Iterable[float], n: int, rule: StatefulRiskRule, what: str) -> np.ndarray:
    a = np.asarray(list(values), dtype=np.float64)
    if a.shape != (n,):
        raise QfError(f"risk rule {rule.name!r}: {what} must give {n} float(s), got {a.shape[0] if a.ndim else a}")
    return a


@dataclass(eq=False)
class RiskStack:
    """The stateful rules of an experiment, composed for the kernels.

    ``params`` holds every rule's parameters back to back; the flat state of :meth:`new_state` holds, per
    rule, its portfolio-level floats then its per-symbol rows (``symbol_state_size x n_symbols``); the per-bar
    inputs of :meth:`inputs` are ``[T, K, N]`` with each rule's ``n_inputs`` rows. :meth:`table` says where
    each rule's pieces are, with its compiled step's address.

    Example::

        stack = compose([DrawdownHalt({"max_drawdown": 0.2})])
        state = stack.new_state(n_symbols=3)
        stack.describe(state, 3)   # [('drawdown_halt', RuleStatus(halted=False, detail=''))]
    """

    rules: tuple[StatefulRiskRule, ...] = ()
    params: np.ndarray = field(default_factory=lambda: np.zeros(0))
    _tables: dict[int, np.ndarray] = field(default_factory=dict, repr=False)
    steps: list[Any] = field(default_factory=list, repr=False)  # the cfuncs, kept alive with the table

    @property
    def active(self) -> bool:
        """Whether any rule is there (without one the kernels need not run at bars without targets)."""
        return bool(self.rules)

    @property
    def names(self) -> list[str]:
        return [r.name for r in self.rules]

    @property
    def n_inputs(self) -> int:
        return sum(_sizes(r)[2] for r in self.rules)

    def settings(self) -> tuple[tuple[str, tuple[float | None, ...]], ...]:
        """Each rule's name and parameters (NaN as None), to compare two experiments' rules."""
        return tuple((r.name, tuple(None if math.isnan(v) else float(v) for v in self._params_of(i)))
                     for i, r in enumerate(self.rules))

    def _params_of(self, i: int) -> np.ndarray:
        starts = np.cumsum([0] + [len(np.atleast_1d(_rule_params(r))) for r in self.rules])
        return self.params[starts[i]:starts[i + 1]]

    def state_length(self, n_symbols: int) -> int:
        return sum(s + q * n_symbols for s, q, _ in map(_sizes, self.rules))

    def table(self, n_symbols: int) -> np.ndarray:
        """The ``int64 [R, 9]`` table :func:`risk_step_nb` reads (compiles the steps on first use)."""
        tab = self._tables.get(n_symbols)
        if tab is not None:
            return tab
        if not self.steps:
            self.steps = [compile_step(type(r).step, f"risk rule {r.name!r}") for r in self.rules]
        tab = np.zeros((len(self.rules), TABLE_COLUMNS), dtype=np.int64)
        p = s = k = 0
        for r, (rule, cf) in enumerate(zip(self.rules, self.steps, strict=True)):
            ss, qs, ks = _sizes(rule)
            np_ = len(np.atleast_1d(_rule_params(rule)))
            tab[r] = (cf.address, p, p + np_, s, s + ss, s + ss, qs, k, k + ks)
            p, s, k = p + np_, s + ss + qs * n_symbols, k + ks
        self._tables[n_symbols] = tab
        return tab

    def new_state(self, n_symbols: int) -> np.ndarray:
        """A fresh flat state: each rule's ``initial_state()`` and ``initial_symbol_state()`` per symbol."""
        out = []
        for rule in self.rules:
            ss, qs, _ = _sizes(rule)
            out.append(_floats(rule.initial_state(), ss, rule, "initial_state()"))
            row = _floats(rule.initial_symbol_state(), qs, rule, "initial_symbol_state()")
            out.append(np.repeat(row[:, None], n_symbols, axis=1).ravel())
        return np.concatenate(out) if out else np.zeros(0)

    def views(self, state: np.ndarray, n_symbols: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """Each rule's ``(state, symbol_state)`` as views into the flat ``state``."""
        out = []
        s = 0
        for rule in self.rules:
            ss, qs, _ = _sizes(rule)
            out.append((state[s:s + ss], state[s + ss:s + ss + qs * n_symbols].reshape(qs, n_symbols)))
            s += ss + qs * n_symbols
        return out

    def describe(self, state: np.ndarray, n_symbols: int) -> list[tuple[str, RuleStatus]]:
        """Each rule's :meth:`qf.components.StatefulRiskRule.describe` of its part of ``state``."""
        out = []
        for i, (rule, (s, q)) in enumerate(zip(self.rules, self.views(state, n_symbols), strict=True)):
            status = rule.describe(self._params_of(i), s, q)
            if not isinstance(status, RuleStatus):
                raise QfError(f"risk rule {rule.name!r}: describe() must return qf.components.RuleStatus, "
                              f"got {type(status).__name__}")
            out.append((rule.name, status))
        return out

    def halted(self, state: np.ndarray, n_symbols: int) -> list[tuple[str, RuleStatus]]:
        """The rules that say trading is halted, with their status (empty: trading)."""
        return [(name, st) for name, st in self.describe(state, n_symbols) if st.halted]

    def check_state(self, values: Sequence[float], n_symbols: int) -> np.ndarray:
        """A stored flat state as an array, refused (:class:`QfError`) when its length does not fit the rules."""
        a = np.asarray(values, dtype=np.float64)
        want = self.state_length(n_symbols)
        if a.shape != (want,):
            rules = ", ".join(self.names) or "(none)"
            raise QfError(f"the stored risk state has {a.size} value(s) but the rules {rules} keep {want} for "
                          f"{n_symbols} symbol(s): the experiment's risk rules changed")
        return a

    def inputs(self, bars: Bars) -> np.ndarray:
        """Every rule's per-bar inputs on ``bars`` as one C-contiguous ``[T, K, N]`` array."""
        T, N = bars.close.shape
        parts = []
        for rule in self.rules:
            k = _sizes(rule)[2]
            if k == 0:
                continue
            a = rule.inputs(bars)
            a = np.asarray(a, dtype=np.float64) if a is not None else None
            if a is None or a.shape != (k, T, N):
                got = None if a is None else a.shape
                raise QfError(f"risk rule {rule.name!r}: inputs(bars) must return an array of shape "
                              f"(n_inputs, bars, symbols) = {(k, T, N)}, got {got}")
            parts.append(a)
        if not parts:
            return np.zeros((T, 0, N))
        return np.ascontiguousarray(np.concatenate(parts, axis=0).transpose(1, 0, 2))

    def inputs_row(self, window: Bars) -> np.ndarray:
        """The ``[K, N]`` inputs of the last bar of ``window``, from that window only (the live path)."""
        if self.n_inputs == 0:
            return np.zeros((0, len(window.symbols)))
        return self.inputs(window)[-1]

    @property
    def history(self) -> int | None:
        """Bars of history the inputs of the last bar need (None: the whole window)."""
        hs = [history_of(r) for r in self.rules if _sizes(r)[2] > 0]
        if not hs:
            return 1
        return None if any(h is None for h in hs) else max(hs)  # type: ignore[type-var]


def _rule_params(rule: StatefulRiskRule) -> np.ndarray:
    p = np.asarray(list(rule.parameters()), dtype=np.float64)
    if p.ndim != 1:
        raise QfError(f"risk rule {rule.name!r}: parameters() must give a flat list of floats")
    return p


def compose(rules: Iterable[Any]) -> RiskStack:
    """The :class:`RiskStack` of the stateful rules among ``rules`` (stateless ones are skipped), in order.

    Example::

        stack = compose(exp.risk)
        stack.names   # ['drawdown_halt']
    """
    chosen = []
    for rule in rules:
        if not getattr(rule, "stateful", False):
            continue
        if not isinstance(rule, StatefulRiskRule):
            raise QfError(f"risk rule {getattr(rule, 'name', rule)!r} says stateful = True but does not subclass "
                          "qf.components.StatefulRiskRule")
        _sizes(rule)
        chosen.append(rule)
    params = [_rule_params(r) for r in chosen]
    return RiskStack(tuple(chosen), np.concatenate(params) if params else np.zeros(0))


def as_stack(risk: RiskStack | Iterable[Any] | None) -> RiskStack:
    """``risk`` as a :class:`RiskStack`: a stack itself, the stateful rules of a list, or none for ``None``."""
    if isinstance(risk, RiskStack):
        return risk
    return compose(() if risk is None else risk)
