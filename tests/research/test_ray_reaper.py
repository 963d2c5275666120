"""The Ray reaper watches the driver's pipe at any descriptor number (select() refused those above 1023)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from qf.report.writer import process_alive
from qf.research import executors

pytestmark = pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="the reaper runs on Linux only")


def test_the_reaper_stands_down_on_its_byte(high_descriptors):
    reaper = executors._Reaper()
    assert reaper._proc is not None and reaper._w is not None and reaper._w > 1023
    time.sleep(0.7)  # past its first wait on the pipe
    assert reaper._proc.poll() is None, "the reaper died while waiting on a high descriptor"
    proc = reaper._proc
    reaper.stand_down()
    assert proc.wait(timeout=10) == 0


def test_the_reaper_kills_the_drivers_descendants_when_the_driver_dies(tmp_path):
    # a stand-in driver holding ~1,040 files: holds a reaper, starts a long-lived child, then dies by SIGKILL
    script = tmp_path / "driver.py"
    script.write_text(
        "import os, resource, subprocess, sys, time\n"
        "from qf.research import executors\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (1200, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))\n"
        "held = [os.open(os.devnull, os.O_RDONLY) for _ in range(1040)]\n"
        "reaper = executors._Reaper()\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\n"
        "print(child.pid, reaper._w, flush=True)\n"
        "time.sleep(120)\n")
    driver = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    child_pid = None
    try:
        child_pid, pipe_fd = (int(x) for x in driver.stdout.readline().split())
        assert pipe_fd > 1023
        time.sleep(1.2)  # the reaper notes the driver's descendants twice a second
        driver.kill()
        driver.wait(timeout=10)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and process_alive(child_pid):
            time.sleep(0.1)
        assert not process_alive(child_pid), "the driver's child outlived it: the reaper did not act"
    finally:
        driver.kill()
        if child_pid is not None and process_alive(child_pid):
            os.kill(child_pid, 9)

