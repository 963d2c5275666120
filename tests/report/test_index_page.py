"""index.html links each run's main page, shows the --set overrides manifest.json records, sorts and filters
with inline JS (the browser test clicks it); manifest.json records the overrides."""

from __future__ import annotations

import json
import re

from qf.config.loader import load_experiment
from qf.report.index import main_page, render_index, scan, write_index
from qf.runner import run_experiment

YAML = """
name: idx
data: {type: sample, params: {dataset: arch_sp500, start: "2017-01-01", end: "2018-12-31"}}
signal: {type: sma_cross, params: {fast: 10, slow: 40}}
sizer: {type: equal}
execution: {fill: next_open}
report: {tearsheet: false}
"""


def _run(root, exp, run_id, pages=(), overrides=None, sharpe=1.0, kind="backtest"):
    d = root / exp / run_id
    d.mkdir(parents=True)
    (d / "metrics.json").write_text(json.dumps({"sharpe": sharpe, "cagr": 0.05, "n_orders": 3}))
    manifest = {"experiment": exp, "created": run_id, "kind": kind, "engine": "vectorbt"}
    if overrides is not None:
        manifest["overrides"] = overrides
    (d / "manifest.json").write_text(json.dumps(manifest))
    for p in pages:
        (d / p).write_text("<html></html>")
    return d


def test_each_run_links_its_main_page(tmp_path):
    sweep = _run(tmp_path, "s", "2", ["tearsheet.html", "sweep.html"], kind="sweep")
    plain = _run(tmp_path, "b", "1", ["tearsheet.html"])
    bare = _run(tmp_path, "c", "0")
    assert main_page(sweep) == sweep / "sweep.html" and main_page(plain) == plain / "tearsheet.html"
    assert main_page(bare) is None
    doc = render_index(tmp_path, scan(tmp_path))
    hrefs = re.findall(r'<a href="([^"]+)">', doc)
    assert hrefs == ["s/2/sweep.html", "b/1/tearsheet.html", "c/0"]


def test_overrides_are_shown_escaped_and_bad_ones_ignored(tmp_path):
    _run(tmp_path, "a", "1", overrides=["signal.params.fast=20", "name=<b>x</b>"])
    _run(tmp_path, "a", "2", overrides="not a list")
    entries = scan(tmp_path)
    assert [e.overrides for e in entries] == [[], ["signal.params.fast=20", "name=<b>x</b>"]]
    doc = render_index(tmp_path, entries)
    assert "--set signal.params.fast=20<br>--set name=&lt;b&gt;x&lt;/b&gt;" in doc and "<b>x</b>" not in doc


def test_page_is_self_contained_sortable_and_filterable(tmp_path):
    _run(tmp_path, "a", "1", sharpe=2.5)
    _run(tmp_path, "a", "2", sharpe=float("nan"))
    doc = render_index(tmp_path, scan(tmp_path))
    assert "<title>qf runs</title>" in doc and 'id="filter"' in doc and "aria-sort" in doc
    assert not re.search(r"(src|href)=\"(https?:)?//", doc)  # no CDN, no remote favicon
    assert '<td data-v="2.5">2.50</td>' in doc and '<td data-v="">n/a</td>' in doc  # NaN sorts last
    assert '<th data-type="num">Sharpe</th>' in doc


def test_manifest_records_the_set_overrides_and_index_shows_them(tmp_path):
    path = tmp_path / "idx.yaml"
    path.write_text(YAML)
    exp = load_experiment(path, ["signal.params.fast=20", f"report.dir={tmp_path / 'reports'}"])
    out = run_experiment(exp, out=tmp_path / "reports" / "idx" / "r1").report_dir
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["overrides"] == ["signal.params.fast=20", f"report.dir={tmp_path / 'reports'}"]
    plain = run_experiment(load_experiment(path), out=tmp_path / "elsewhere").report_dir
    assert json.loads((plain / "manifest.json").read_text())["overrides"] == []
    write_index(tmp_path / "reports")
    assert "--set signal.params.fast=20" in (tmp_path / "reports" / "index.html").read_text()
