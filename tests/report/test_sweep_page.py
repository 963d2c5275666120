"""sweep.html helps choose: values in cells, the best marked, edge warning, stability, formatted top table."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest

from qf.report.sweep_page import edge_params, neighbourhood, sweep_html

P = ["signal.params.fast", "signal.params.slow"]


def _table(peak_fast: int = 3, peak_slow: int = 30) -> pd.DataFrame:
    rows = []
    for fast in (1, 2, 3, 4, 5):
        for slow in (10, 20, 30, 40, 50):
            sharpe = 1.0 - 0.1 * (fast - peak_fast) ** 2 - 0.0004 * (slow - peak_slow) ** 2
            rows.append({P[0]: fast, P[1]: slow, "sharpe": sharpe, "sortino": sharpe * 1.3, "cagr": sharpe / 10,
                         "total_return": sharpe / 3, "max_drawdown": -0.12, "volatility": 0.1 + fast / 100,
                         "turnover": 3.2, "fees_paid": 780.8, "n_orders": 14, "final_equity": 320_200.0 + fast})
    return pd.DataFrame(rows)


def _page(tmp_path, table, metric="sharpe", tearsheet=True, inference=None) -> str:
    if tearsheet:
        (tmp_path / "tearsheet.html").write_text("<html></html>")
    sweep_html(table, P, metric, tmp_path / "sweep.html", f"demo: {metric} by parameters", inference)
    return (tmp_path / "sweep.html").read_text()


def _figure(page: str) -> dict:
    # plotly's newPlot call holds the figure's data and layout as JSON
    m = re.search(r'Plotly\.newPlot\(\s*"[^"]+",\s*(\[.*?\]),\s*(\{.*?\}),\s*\{"displaylogo"', page, re.S)
    assert m, "no plotly figure on the page"
    return {"data": json.loads(m.group(1)), "layout": json.loads(m.group(2))}


def test_heatmap_has_values_in_cells_and_outlines_the_best(tmp_path):
    page = _page(tmp_path, _table())
    fig = _figure(page)
    heat = fig["data"][0]
    assert heat["type"] == "heatmap" and heat["texttemplate"] == "%{z:.3f}"
    # the outline covers the best cell (fast=3 is row 2 of 5, slow=30 column 2 of 5) in axis-domain units
    (shape,) = fig["layout"]["shapes"]
    assert (shape["x0"], shape["x1"], shape["y0"], shape["y1"]) == pytest.approx((0.4, 0.6, 0.4, 0.6))
    assert "<title>demo: sharpe by parameters</title>" in page
    assert "Best by sharpe: <b>signal.params.fast = 3</b>, <b>signal.params.slow = 30</b>" in page


def test_top_table_is_formatted_and_links_the_best_tear_sheet(tmp_path):
    page = _page(tmp_path, _table())
    top = page[page.index("<h2>Top 25 by sharpe</h2>"):]
    assert "e+0" not in top and "320,203.00" in top and "10.00%" in top and "-12.00%" in top
    assert top.count('<a href="tearsheet.html">tear sheet</a>') == 1
    first = re.search(r'<tr class="best">(.*?)</tr>', top).group(1)
    assert "tearsheet.html" in first and "<td>1</td>" in first


def test_no_link_when_the_report_has_no_tear_sheet(tmp_path):
    assert "tearsheet.html" not in _page(tmp_path, _table(), tearsheet=False)


def test_edge_warning_only_when_the_best_is_on_the_grid_edge(tmp_path):
    assert "edge of the grid" not in _page(tmp_path, _table())
    page = _page(tmp_path, _table(peak_fast=5))
    assert "edge of the grid" in page and "signal.params.fast = 5 is the largest value tried" in page
    t = _table(peak_slow=10)
    best = t.sort_values("sharpe").iloc[-1]
    assert edge_params(t, P, best) == ["signal.params.slow = 10 is the smallest value tried"]


def test_stability_is_the_three_by_three_neighbourhood(tmp_path):
    t = _table()
    best = t["sharpe"].idxmax()
    nb = neighbourhood(t, P, "sharpe", best)
    near = t[t[P[0]].between(2, 4) & t[P[1]].between(20, 40)].drop(index=best)
    assert len(nb.values) == 8
    assert nb.mean == pytest.approx(near["sharpe"].mean()) and nb.worst == pytest.approx(near["sharpe"].min())
    page = _page(tmp_path, t)
    assert "Parameter stability" in page and f"{nb.mean:.3f}" in page and f"{nb.worst:.3f}" in page
    assert f"{nb.mean / nb.best:.0%}" in page
    # in a corner the grid cuts the neighbourhood to 3 cells
    e = _table(peak_fast=5, peak_slow=50)
    assert len(neighbourhood(e, P, "sharpe", e["sharpe"].idxmax()).values) == 3


def test_text_parameters_have_no_neighbours_across_values():
    t = pd.DataFrame({"sizer.type": ["hrp", "equal", "hrp", "equal"], "limit": [0.5, 0.5, 1.0, 1.0],
                      "sharpe": [1.0, 0.2, 0.9, 0.1]})
    nb = neighbourhood(t, ["sizer.type", "limit"], "sharpe", 0)
    assert list(nb.values) == [0.9]  # hrp at the next limit, not equal at the same one


def test_lower_is_better_metric_picks_the_smallest(tmp_path):
    page = _page(tmp_path, _table(), metric="volatility")
    assert "lower volatility is better" in page and "<b>signal.params.fast = 1</b>" in page
    assert _figure(page)["data"][0]["reversescale"] is True


def test_psr_and_dsr_are_stated_with_a_sentence_each(tmp_path):
    page = _page(tmp_path, _table(), inference={"psr": 0.912, "dsr": 0.4321, "n_trials": 25, "n_obs": 900,
                                                "pbo": 0.625, "pbo_partitions": 16})
    assert "PSR 0.912" in page and "DSR 0.432" in page and "25 trials" in page
    assert "PBO 0.625" in page and "16 partitions" in page
    page = _page(tmp_path, _table(), inference={"psr": 0.9, "dsr": 0.4, "n_trials": 25, "pbo": None,
                                                "pbo_note": "PBO needs at least 2 trials"})
    assert "PBO not computed: PBO needs at least 2 trials" in page


def test_one_and_three_parameters(tmp_path):
    t = _table()
    sweep_html(t[[P[0], "sharpe"]].drop_duplicates(P[0]), [P[0]], "sharpe", tmp_path / "one.html", "one")
    one = (tmp_path / "one.html").read_text()
    assert "<title>one</title>" in one and "Parameter stability" in one
    t["x"] = t[P[0]] * 2
    sweep_html(t, [*P, "x"], "sharpe", tmp_path / "three.html", "three")
    assert "parcoords" in (tmp_path / "three.html").read_text()


def test_no_finite_metric_says_so(tmp_path):
    t = _table()
    t["sharpe"] = float("nan")
    page = _page(tmp_path, t)
    assert "No combination has a finite sharpe" in page and "Parameter stability" not in page
