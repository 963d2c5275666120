"""Every page kind qf writes loads offline in a real browser: headless Chromium, zero console errors, zero
uncaught page errors, zero requests other than file://.

Chromium is Debian's (``apt-get install chromium``, done by ``.ci/run`` as root), driven by Playwright with
``executable_path`` (Playwright's own browser downloads are never used). The pages come from small, short
experiments run once through the CLI, as a user would (shared with the tear sheet tests: conftest.py).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from .conftest import qf, run_dir

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[dev]')")

CHROMIUM = next((p for p in (os.environ.get("QF_CHROMIUM"), shutil.which("chromium"), shutil.which("chromium-browser"),
                             shutil.which("google-chrome")) if p), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium on this machine (apt-get install chromium; "
                                                          ".ci/run installs it when run as root)")


@pytest.fixture(scope="module")
def pages(report_runs) -> dict[str, Path]:
    """One page of every kind: the shared backtest, sweep and walk-forward runs (tests/report/conftest.py),
    then a paper session and a comparison written by qf into the same report folder (once for the module)."""
    root = report_runs.root
    qf("paper", str(report_runs.experiments["backtest"]), "--broker", "sim", "--set", "name=paper", "--set",
       "data.params.start=2018-06-01", "--state-dir", str(report_runs.tmp / "state"))
    backtest, paper = report_runs.runs["backtest"], run_dir(root, "paper")
    qf("report", "compare", str(backtest), str(paper), "--out", str(root / "compare.html"))
    return {"tearsheet (backtest)": backtest / "tearsheet.html", "tearsheet (paper)": paper / "tearsheet.html",
            "sweep.html": report_runs.runs["sweep"] / "sweep.html",
            "tearsheet (sweep's best)": report_runs.runs["sweep"] / "tearsheet.html",
            "tearsheet (walk-forward)": report_runs.runs["walk_forward"] / "tearsheet.html",
            "compare.html": root / "compare.html", "index.html": root / "index.html"}


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM)
        yield b
        b.close()


def load(browser, page_file: Path):
    """Open ``page_file`` and return (page, console errors, page errors, requests that were not file://)."""
    page = browser.new_page()
    console, errors, remote = [], [], []
    page.on("console", lambda m: console.append(f"{m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("request", lambda r: remote.append(r.url) if not r.url.startswith(("file:", "data:", "blob:")) else None)
    page.goto(page_file.resolve().as_uri(), wait_until="load")
    page.wait_for_timeout(300)  # plotly draws after load
    return page, console, errors, remote


@pytest.mark.parametrize("kind", ["tearsheet (backtest)", "tearsheet (paper)", "sweep.html", "tearsheet (sweep's best)",
                                  "tearsheet (walk-forward)", "compare.html", "index.html"])
def test_page_loads_offline_without_errors(pages, browser, kind):
    assert pages[kind].is_file(), f"{kind} was not written"
    page, console, errors, remote = load(browser, pages[kind])
    try:
        assert console == [], f"{kind}: console errors"
        assert errors == [], f"{kind}: uncaught page errors"
        assert remote == [], f"{kind}: network requests"
        assert page.title().strip(), f"{kind}: empty <title>"
    finally:
        page.close()


def test_plotly_pages_draw_their_figures(pages, browser):
    for kind, n in (("sweep.html", 1), ("compare.html", 2)):
        page, *_ = load(browser, pages[kind])
        assert page.locator("div.plotly-graph-div .main-svg").count() >= n, kind
        page.close()


def test_index_sorts_filters_and_links_main_pages(pages, browser):
    page, *_ = load(browser, pages["index.html"])
    rows = page.locator("#runs tbody tr")
    assert rows.count() == 4
    links = page.locator("#runs tbody a").evaluate_all("els => els.map(e => e.getAttribute('href'))")
    assert sorted(h.rsplit("/", 1)[1] for h in links) == ["sweep.html", "tearsheet.html", "tearsheet.html",
                                                         "tearsheet.html"]
    # clicking Sharpe sorts by the raw number, twice reverses it
    col = [t.strip() for t in page.locator("#runs thead th").all_inner_texts()].index("Sharpe")
    page.locator("#runs thead th").nth(col).click()
    assert page.locator("#runs thead th").nth(col).get_attribute("aria-sort") == "ascending"

    def sharpes() -> list[float]:
        return [float(v) for v in page.locator(f"#runs tbody tr td:nth-child({col + 1})")
                .evaluate_all("els => els.map(e => e.dataset.v)")]

    assert sharpes() == sorted(sharpes())
    page.locator("#runs thead th").nth(col).click()
    assert sharpes() == sorted(sharpes(), reverse=True) != sorted(sharpes())
    page.locator("#filter").fill("sweep vectorbt")
    assert page.locator("#runs tbody tr:not([hidden])").count() == 1
    assert page.locator("#count").inner_text() == "1 of 4 run(s) shown"
    page.locator("#filter").fill("")
    assert page.locator("#runs").inner_text().count("--set execution.slippage=0.0001") >= 2  # backtest, walk-forward
    page.close()
