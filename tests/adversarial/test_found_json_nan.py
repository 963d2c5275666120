"""Report JSON is strict: a NaN figure (e.g. PSR of a sweep where nothing trades) is written as null."""

from __future__ import annotations

import json
import math

import numpy as np

from qf.report.writer import write_json


def test_non_finite_numbers_are_null(tmp_path):
    path = tmp_path / "best.json"
    write_json(path, {"psr": float("nan"), "dsr": np.float64("inf"), "n": np.int64(3), "rows": [1.5, -math.inf],
                      "nested": {"x": np.float32("nan")}, "text": "NaN"})
    text = path.read_text()
    assert "NaN" not in text.replace('"NaN"', "") and "Infinity" not in text
    assert json.loads(text) == {"psr": None, "dsr": None, "n": 3, "rows": [1.5, None], "nested": {"x": None},
                                "text": "NaN"}
