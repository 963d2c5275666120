"""`qf run` stopped by SIGTERM (kill, systemd, docker) stops like Ctrl-C: one line, exit 143, no report and no
temporary report folder left behind. Before, the process died silently with -15 and left `.tmp-*` behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from qf.testing.waiting import signal_when

SLOW = '''
import time
from pathlib import Path

import pandas as pd

from qf.components import SignalModel


class Slow(SignalModel):
    """Writes a marker, then computes for a long time: the test's moment to send SIGTERM."""

    name = "slow"

    def compute(self, bars) -> pd.DataFrame:
        Path("computing").write_text("now")
        time.sleep(60)
        return bars.close * 0 + 1.0
'''


def test_sigterm_stops_qf_run_cleanly(tmp_path: Path) -> None:
    (tmp_path / "strategies").mkdir()
    (tmp_path / "strategies" / "slow.py").write_text(SLOW)
    rows = "\n".join(f"2020-01-{d:02d},{10 + d}" for d in range(1, 29))
    (tmp_path / "prices.csv").write_text("date,close\n" + rows + "\n")
    (tmp_path / "exp.yaml").write_text(
        "name: slow\ndata: {type: csv, params: {path: prices.csv}}\n"
        "signal: {type: strategies/slow.py:Slow}\nsizer: {type: equal}\nexecution: {fill: next_close}\n"
        "report: {dir: reports}\n")
    proc = subprocess.Popen([sys.executable, "-c", "from qf.cli.main import main; main()", "run", "exp.yaml"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "COLUMNS": "200"})
    out, err = signal_when(proc, (tmp_path / "computing").exists, signal.SIGTERM,
                           what="the run never reached the signal")
    assert proc.returncode == 143, (out, err)
    assert "terminated (SIGTERM)" in err and "Traceback" not in err
    leftovers = [p.name for p in (tmp_path / "reports").rglob("*")] if (tmp_path / "reports").exists() else []
    assert [n for n in leftovers if n.startswith(".tmp-") or n.endswith(".html")] == []
