"""Experiment folders on disk for end-to-end tests: a CSV universe next to an experiment YAML.

A test that runs ``qf run``, a sweep or a walk-forward on bars it made itself (:func:`qf.testing.sample_bars`)
writes them where the ``csv`` data source reads them, in its long format (``date,symbol,<fields>``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from qf.bars import Bars


def write_csv_experiment(folder: Path, bars: Bars, doc: Mapping[str, Any], name: str = "experiment.yaml",
                         csv: str = "prices.csv", fields: Sequence[str] | None = None) -> Path:
    """Write ``bars`` to ``folder/csv`` (long format, exact floats) and ``doc`` to ``folder/name``; return the YAML.

    The CSV is written once per folder: later calls with other documents (an override, a second experiment)
    reuse it, so every experiment of the folder reads the same file. ``fields`` limits the columns (default:
    every field of ``bars``). ``doc`` should name the file, ``data: {type: csv, params: {path: prices.csv}}``:
    a relative path resolves against the experiment's folder. Example::

        bars = sample_bars(n_symbols=3, n_bars=300, seed=11)
        doc = {"name": "t", "data": {"type": "csv", "params": {"path": "prices.csv"}},
               "signal": {"type": "sma_cross", "params": {"fast": 10, "slow": 40}}, "sizer": {"type": "equal"}}
        exp = write_csv_experiment(tmp_path, bars, doc, "sweep.yaml")   # tmp_path/sweep.yaml
    """
    import pandas as pd
    import yaml

    folder.mkdir(parents=True, exist_ok=True)
    prices = folder / csv
    if not prices.exists():
        long = pd.concat({f: getattr(bars, f).stack() for f in (fields or bars.fields)}, axis=1)
        long.index.names = ["date", "symbol"]
        # %.17g: the CSV source reads back the very floats the test computes its expectations from
        long.reset_index().to_csv(prices, index=False, float_format="%.17g")
    path = folder / name
    path.write_text(yaml.safe_dump(dict(doc), sort_keys=False))
    return path
