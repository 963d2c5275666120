"""What every ``qf`` command shares: the consoles, the one-line error exit and the run summary table.

:mod:`qf.cli.main` and the command modules it registers (:mod:`qf.cli.paper`, :mod:`qf.cli.watch`, ...)
import it, so no command module needs to import :mod:`qf.cli.main` back (which imports them).

Example::

    from qf.cli.common import fail, print_summary

    try:
        outcome = run_experiment(exp)
    except QfError as exc:
        fail(exc)                      # "error: ..." lines on stderr, exit code 2
    print_summary(exp.name, outcome.metrics)
"""

from __future__ import annotations

import sys
from typing import NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from qf.errors import QfError

out = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 160)

# the metrics the summary table shows, in this order
SUMMARY = ("cagr", "sharpe", "sortino", "max_drawdown", "volatility", "turnover", "fees_paid", "n_orders",
           "final_equity")


def fail(exc: QfError) -> NoReturn:
    """Print ``exc``'s problems as ``error:`` lines on stderr and exit with its code (2 for user errors)."""
    for line in exc.problems:
        err.print(f"[bold red]error:[/] {escape(line)}", highlight=False, soft_wrap=True)
    raise typer.Exit(exc.exit_code)


def fmt_metric(key: str, v: float | int | str | None) -> str:
    """One metric as the summary shows it, e.g. ``fmt_metric("cagr", 0.1022) == "10.22%"``."""
    if v is None:
        return "-"
    if isinstance(v, str):
        return v
    if isinstance(v, float) and v != v:
        return "n/a"
    if key in ("cagr", "total_return", "max_drawdown", "volatility"):
        return f"{v:.2%}"
    if key in ("final_equity", "fees_paid"):
        return f"{v:,.2f}"
    if key == "turnover":
        return f"{v:.2f}x/yr"
    if isinstance(v, int):
        return str(v)
    return f"{v:.3f}"


def period(metrics: dict) -> str:
    """The evaluation period every figure covers (warm-up excluded), e.g. '2011-01-10 to 2022-12-28, 3013 bars'."""
    if "eval_bars" not in metrics:
        return f"{metrics.get('start', '?')} to {metrics.get('end', '?')} (whole run)"
    if not metrics["eval_bars"]:
        return "no bar to evaluate"
    # .get: a hand-edited or partly written metrics.json must not turn `qf report compare` into a traceback
    return f"{metrics.get('eval_start', '?')} to {metrics.get('eval_end', '?')}, {metrics['eval_bars']} bars"


def print_summary(title: str, metrics: dict, console: Console | None = None) -> None:
    """The summary table of a run (``metrics`` as in metrics.json) on ``console`` (default: stdout).

    Example::

        print_summary("sma_cross (vectorbt)", json.loads(Path("reports/.../metrics.json").read_text()))
    """
    console = console or out
    table = Table(title=title, show_header=False)
    table.add_row("period", period(metrics))
    for k in SUMMARY:
        if k in metrics:
            table.add_row(k, fmt_metric(k, metrics[k]))
    console.print(table)
    if isinstance(metrics.get("trades"), dict):
        from qf.report.trades import summary_line  # lazy: pandas (qf --help loads no pandas)

        console.print(summary_line(metrics["trades"]), highlight=False)
    if metrics.get("excluded_bars"):
        console.print(f"{metrics['excluded_bars']} warm-up bars before the period are excluded; "
                      f"{metrics.get('periods_per_year', 252)} bars a year, "
                      f"risk-free rate {metrics.get('risk_free', 0):g}")
