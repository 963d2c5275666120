"""HRP per solve: qf's kernel vs riskfolio-lib's ``HCPortfolio``, side by side, on real 252-day windows.

The data is skfolio's 20 S&P 500 stocks (``sample`` source, ``sp500_20``, 1990-2022). For every
configuration the kernel covers (pearson / spearman codependence x single / average / complete / ward
linkage, variance risk measure) both solve the same ``--windows`` windows (default 200, spread evenly over
the history); each solve is timed alone, riskfolio and kernel alternating so that machine load hits both
alike. Printed per configuration: mean ms per solve of each, their ratio, and the largest absolute weight
difference (the kernel must stay within 1e-12 of riskfolio; the exit code is 1 if it does not).

Usage::

    python benchmarks/hrp.py                    # 8 configurations x 200 windows (~1 min on a quiet machine)
    python benchmarks/hrp.py --windows 50 --configs pearson:single
"""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import sys
import time
import warnings

import numpy as np

WINDOW = 252
TOLERANCE = 1e-12


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--windows", type=int, default=200, help="windows per configuration")
    ap.add_argument("--configs", nargs="*", default=None,
                    help="codependence:linkage pairs (default: every configuration the kernel covers)")
    args = ap.parse_args()

    import riskfolio as rp

    from qf_plugins.data.sample import SampleSource
    from qf_plugins.sizers.hrp_kernel import KERNEL_CODEPENDENCE, KERNEL_LINKAGE, hrp_weights_kernel, kernel_covers

    configs = ([tuple(c.split(":")) for c in args.configs] if args.configs
               else sorted(itertools.product(sorted(KERNEL_CODEPENDENCE), sorted(KERNEL_LINKAGE))))
    for cod, link in configs:
        if not kernel_covers(cod, link, "MV"):
            sys.exit(f"error: --configs {cod}:{link} is not covered by the kernel")
    returns = SampleSource({"dataset": "sp500_20"}).load().close.pct_change(fill_method=None).iloc[1:]
    ends = np.linspace(WINDOW, len(returns), args.windows).astype(int)
    frames = [returns.iloc[e - WINDOW : e] for e in ends]
    arrays = [np.ascontiguousarray(f.to_numpy()) for f in frames]

    t = time.perf_counter()
    for cod, link in configs:  # numba compile or cache load, and scipy's first call, outside the timings
        hrp_weights_kernel(arrays[0], cod, link)
    first_call = time.perf_counter() - t

    print(f"HRP, {returns.shape[1]} assets x {WINDOW}-day windows of sp500_20, {args.windows} windows per "
          f"configuration, rm=MV, leaf_order=True")
    print(f"kernel first calls (compile or cache load, all configurations): {first_call:.2f} s\n")
    head = f"{'codependence':13}{'linkage':10}{'riskfolio ms':>14}{'kernel ms':>11}{'ratio':>8}{'max |diff|':>12}"
    print(head)
    print("-" * len(head))
    total_rf = total_k = 0.0
    worst = 0.0
    for cod, link in configs:
        t_rf = t_k = 0.0
        diff = 0.0
        for frame, x in zip(frames, arrays, strict=True):
            with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
                warnings.simplefilter("ignore")
                t = time.perf_counter()
                ref = rp.HCPortfolio(returns=frame).optimization(
                    model="HRP", codependence=cod, rm="MV", linkage=link, leaf_order=True)["weights"]
                t_rf += time.perf_counter() - t
            t = time.perf_counter()
            got = hrp_weights_kernel(x, cod, link)
            t_k += time.perf_counter() - t
            diff = max(diff, float(np.abs(got - ref.reindex(frame.columns).to_numpy()).max()))
        n = len(frames)
        print(f"{cod:13}{link:10}{t_rf / n * 1e3:14.2f}{t_k / n * 1e3:11.3f}{t_rf / t_k:7.0f}x{diff:12.1e}")
        total_rf += t_rf
        total_k += t_k
        worst = max(worst, diff)
    n = len(frames) * len(configs)
    print("-" * len(head))
    print(f"{'all':23}{total_rf / n * 1e3:14.2f}{total_k / n * 1e3:11.3f}{total_rf / total_k:7.0f}x{worst:12.1e}")
    if worst > TOLERANCE:
        sys.exit(f"FAIL: the kernel differs from riskfolio by {worst:.1e} > {TOLERANCE:g}")


if __name__ == "__main__":
    main()
