"""Limit crowding: at most ``max_positions`` holdings that move together (pairwise correlation above ``rho``),
and per-group caps (positions and gross weight per sector) from a ``symbol,group`` mapping file."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from qf.bars import Bars
from qf.components import Params as BaseParams
from qf.components import RiskRule
from qf.errors import QfError


def cap_correlated(weights: np.ndarray, corr: np.ndarray, k: int, rho: float) -> np.ndarray:
    """One row of weights with every position beyond the limit set to 0.

    Positions are considered largest |weight| first (ties: column order); one is kept unless it would
    have, or would give an already kept position, more than ``k - 1`` kept neighbours correlated above
    ``rho``. So no kept position moves with more than ``k - 1`` others, and no group of more than ``k``
    mutually correlated positions survives. A pair with an unknown correlation (NaN) is not correlated.

    Example:
        >>> c = np.array([[1, .9, .9], [.9, 1, .9], [.9, .9, 1]])
        >>> cap_correlated(np.array([.2, .5, .3]), c, 2, 0.8).tolist()
        [0.0, 0.5, 0.3]
    """
    out = weights.copy()
    close = np.nan_to_num(corr, nan=0.0) > rho
    np.fill_diagonal(close, False)
    kept: list[int] = []
    neighbours = np.zeros(len(weights), dtype=int)
    for j in np.argsort(-np.abs(weights), kind="stable"):
        if weights[j] == 0 or np.isnan(weights[j]):
            continue
        linked = [i for i in kept if close[j, i]]
        if len(linked) >= k or any(neighbours[i] >= k - 1 for i in linked):
            out[j] = 0.0
            continue
        kept.append(j)
        neighbours[j] = len(linked)
        for i in linked:
            neighbours[i] += 1
    return out


def read_groups(path: Path) -> dict[str, str]:
    """``symbol -> group`` from a CSV with a ``symbol,group`` header (extra columns ignored).

    Raises :class:`QfError` naming the file (and the line) for a missing or unreadable file, a header
    without ``symbol`` and ``group``, an empty cell, or a symbol listed twice with different groups.

    Example::

        read_groups(Path("experiments/sectors_sp500_20.csv"))["AAPL"]   # 'Information Technology'
    """
    who = f"risk correlation_cap: groups file {path}"
    if not path.is_file():
        raise QfError(f"{who} not found" + ("" if path.is_absolute() else f" (looked in {path.resolve().parent})"))
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.reader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise QfError(f"{who}: cannot read: {exc}") from None
    if not rows:
        raise QfError(f"{who}: empty (expected a header line 'symbol,group')")
    header = [c.strip().lower() for c in rows[0]]
    if "symbol" not in header or "group" not in header:
        raise QfError(f"{who}:1: the header must name the columns symbol and group (got {','.join(rows[0])!r})")
    si, gi = header.index("symbol"), header.index("group")
    out: dict[str, str] = {}
    for line, row in enumerate(rows[1:], start=2):
        if not any(c.strip() for c in row):
            continue
        symbol = row[si].strip() if si < len(row) else ""
        group = row[gi].strip() if gi < len(row) else ""
        if not symbol or not group:
            raise QfError(f"{who}:{line}: a row needs both a symbol and a group (got {','.join(row)!r})")
        if out.get(symbol, group) != group:
            raise QfError(f"{who}:{line}: {symbol} is in group {out[symbol]!r} already, not {group!r}")
        out[symbol] = group
    return out


def cap_groups(weights: np.ndarray, groups: np.ndarray, max_count: dict[str, int] | None,
               max_weight: float | None) -> np.ndarray:
    """One row of weights with the per-group caps applied.

    ``max_count``: in each group only its ``max_count[group]`` largest positions (|weight|, ties in column
    order) are kept, the rest go to cash; ``max_weight``: a group whose gross weight (sum of |weight|)
    exceeds it is scaled down to it, its positions in proportion (the excess goes to cash). NaN weights
    (hold) are neither counted nor changed.

    Example:
        >>> g = np.array(["tech", "tech", "tech", "energy"])
        >>> cap_groups(np.array([.3, .2, .1, .4]), g, {"tech": 2, "energy": 2}, 0.4).round(6).tolist()
        [0.24, 0.16, 0.0, 0.4]
    """
    out = weights.copy()
    live = np.nan_to_num(weights) != 0
    for g in np.unique(groups[live]):
        members = np.flatnonzero(live & (groups == g))
        if max_count is not None and members.size > max_count.get(str(g), members.size):
            order = members[np.argsort(-np.abs(weights[members]), kind="stable")]
            out[order[max_count[str(g)]:]] = 0.0
            members = order[: max_count[str(g)]]
        gross = float(np.abs(out[members]).sum())
        if max_weight is not None and gross > max_weight:
            out[members] *= max_weight / gross
    return out


class CorrelationCap(RiskRule):
    """No more than ``max_positions`` positions whose pairwise correlation exceeds ``rho``; optionally per-group
    caps from a sector mapping file.

    On each rebalance date the correlation of daily close-to-close returns over the trailing ``window``
    bars (up to that date only) links the positions; keeping the largest positions first, a position
    is dropped to cash when it would join ``max_positions`` (or more) kept positions that move together
    (see :func:`cap_correlated`). Positions with fewer than ``window`` returns have no correlation yet and
    are never dropped; NaN weights (hold) pass through and are not counted. ``max_positions: null`` turns
    the correlation limit off (group caps only).

    ``groups`` names a CSV file with a ``symbol,group`` header (relative paths are resolved against the
    experiment file's folder) that must give a group to every symbol of the data; then, before the
    correlation limit, each group keeps at most ``max_per_group`` positions (``group_caps`` overrides it
    per group) and, after it, a group whose gross weight exceeds ``max_group_weight`` is scaled down to it
    (see :func:`cap_groups`).

    YAML::

        risk:
          - type: correlation_cap
            params: {max_positions: 3, rho: 0.8, window: 63, groups: sectors.csv, max_per_group: 2,
                     group_caps: {Energy: 1}, max_group_weight: 0.4}
    """

    name = "correlation_cap"

    class Params(BaseParams):
        max_positions: int | None = Field(3, ge=1, description="most positions allowed in a group moving "
                                                                "together (null: no correlation limit)")
        rho: float = Field(0.8, ge=-1, lt=1, description="pairwise correlation above which two positions move "
                                                         "together")
        window: int = Field(63, ge=3, description="daily returns in each correlation estimate")
        groups: str | None = Field(None, description="CSV file symbol,group (a sector mapping)")
        max_per_group: int | None = Field(None, ge=1, description="most positions per group")
        group_caps: dict[str, int] = Field(default_factory=dict, description="most positions of named groups")
        max_group_weight: float | None = Field(None, gt=0, description="largest gross weight per group")

        @model_validator(mode="after")
        def _groups_and_caps(self) -> CorrelationCap.Params:
            caps = self.max_per_group is not None or bool(self.group_caps) or self.max_group_weight is not None
            if self.groups is None and caps:
                raise ValueError("max_per_group, group_caps and max_group_weight need a groups file (groups: a CSV "
                                 "with a symbol,group header)")
            if self.groups is not None and not caps:
                raise ValueError("groups is set but no group cap is (max_per_group, group_caps or max_group_weight)")
            if any(v < 1 for v in self.group_caps.values()):
                raise ValueError("group_caps: every cap must be at least 1")
            return self

    params: Params

    def __init__(self, params: Params | dict | None = None) -> None:
        super().__init__(params)
        self._base_dir: Path | None = None
        self._groups: dict[str, str] | None = None

    def resolve_paths(self, base_dir: str | Path) -> CorrelationCap:
        """Resolve a relative ``groups`` path against the experiment file's folder, and read it now (a missing
        or malformed file is an error of the experiment, not of its first rebalance)."""
        self._base_dir = Path(base_dir)
        if self.params.groups is not None:
            self.group_map()
        return self

    def group_map(self) -> dict[str, str]:
        """``symbol -> group`` of the ``groups`` file (read once), checked against ``group_caps``."""
        if self._groups is None:
            path = Path(self.params.groups or "")
            if not path.is_absolute() and self._base_dir is not None:
                path = self._base_dir / path
            mapping = read_groups(path)
            unknown = sorted(set(self.params.group_caps) - set(mapping.values()))
            if unknown:
                raise QfError(f"risk correlation_cap: group_caps names group(s) {', '.join(map(repr, unknown))} that "
                              f"{path} does not have (its groups: {', '.join(sorted(set(mapping.values())))})")
            self._groups = mapping
        return self._groups

    @property
    def warmup(self) -> int:
        return self.params.window

    def _group_arrays(self, symbols: list[str]) -> tuple[np.ndarray, dict[str, int] | None]:
        mapping = self.group_map()
        missing = [s for s in symbols if s not in mapping]
        if missing:
            raise QfError(f"risk correlation_cap: the groups file {self.params.groups} has no group for "
                          f"{len(missing)} symbol(s) of the data: {', '.join(missing[:10])}"
                          + (" ..." if len(missing) > 10 else ""))
        groups = np.array([mapping[s] for s in symbols], dtype=object)
        p = self.params
        counts = None
        if p.max_per_group is not None or p.group_caps:
            default = p.max_per_group if p.max_per_group is not None else len(symbols)
            counts = {str(g): int(p.group_caps.get(str(g), default)) for g in set(groups)}
        return groups, counts

    def apply(self, weights: pd.DataFrame, bars: Bars) -> pd.DataFrame:
        p = self.params
        w = weights.to_numpy(dtype=float)
        out = w.copy()
        groups, counts = self._group_arrays([str(c) for c in weights.columns]) if p.groups else (None, None)
        if groups is not None and counts is not None:
            for r in range(len(out)):
                out[r] = cap_groups(out[r], groups, counts, None)
        if p.max_positions is not None:
            ret = bars.close.pct_change(fill_method=None).reindex(columns=weights.columns)
            pos = ret.index.get_indexer(weights.index)
            values = ret.to_numpy(dtype=float)
            for r, i in enumerate(pos):
                held = np.flatnonzero(np.nan_to_num(out[r]) != 0)
                if i < p.window or held.size <= p.max_positions:
                    continue
                window = values[i - p.window + 1 : i + 1][:, held]
                full = ~np.isnan(window).any(axis=0)
                corr = np.full((held.size, held.size), np.nan)
                if full.sum() > 1:
                    with np.errstate(invalid="ignore", divide="ignore"):
                        corr[np.ix_(full, full)] = np.corrcoef(window[:, full], rowvar=False)
                out[r, held] = cap_correlated(out[r, held], corr, p.max_positions, p.rho)
        if groups is not None and p.max_group_weight is not None:
            for r in range(len(out)):
                out[r] = cap_groups(out[r], groups, None, p.max_group_weight)
        return pd.DataFrame(out, index=weights.index, columns=weights.columns)
