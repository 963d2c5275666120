"""Sweeps on a real two-node Ray cluster (started here with `ray start`): same rows as the local pool, the
bars put once, local-file components and plugin lists shipped with the job, versions checked, and
infrastructure failures as one-line qf errors.

The cluster (a head and a second worker node, one CPU each, token auth off, in this test's own temp dir)
takes ~25 s to start on a loaded machine; it is started once for the module and its processes are
killed by pid at the end.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from qf.config.loader import load_experiment
from qf.errors import QfError
from qf.research import ray_cluster
from qf.research.ray_cluster import ClusterError, check_versions, connect_error, job_runtime_env, local_files
from qf.research.sweep import ComboTask, evaluate_chunk, evaluate_grid, grid_of

ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'qf[ray]')")

EXPERIMENT = {
    "name": "ray_sweep",
    "data": {"type": "sample", "params": {"dataset": "arch_sp500", "start": "2014-01-01", "end": "2016-12-31"}},
    "signal": {"type": "strategies/drv_sma.py:DrvSma", "params": {"fast": 10, "slow": 50}},
    "sizer": {"type": "equal"},
    "execution": {"fill": "next_open", "fees": 0.001},
    "sweep": {"params": {"signal.params.fast": [5, 10, 20], "signal.params.slow": [40, 60, 80]}},
}

DRIVER_ONLY = '''
from qf_plugins.signals.sma_cross import SmaCross


class DrvSma(SmaCross):
    """An SMA cross only the driver has on disk (its folder is not on any node)."""

    name = "drv_sma"
'''


def _env_of(chunk: str) -> str | None:
    return os.environ.get(chunk)


def _ray_pids(temp_dir: Path) -> list[int]:
    """Processes of our cluster: every Ray process names the session folder inside ``temp_dir``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if str(temp_dir).encode() in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def _with_children(pids: list[int]) -> set[int]:
    """``pids`` and their descendants now (a node's workers are its raylet's children)."""
    parent_of = {}
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError, ValueError, IndexError):
            if entry.name.isdigit():
                stat = (entry / "stat").read_text()
                parent_of[int(entry.name)] = int(stat[stat.rindex(")") + 2:].split()[1])
    out, grew = set(pids), True
    while grew:
        more = {pid for pid, parent in parent_of.items() if parent in out} - out
        out |= more
        grew = bool(more)
    return out


def _ray_cli(*args: str, env: dict[str, str]) -> None:
    ray_bin = str(Path(sys.executable).with_name("ray"))
    proc = subprocess.run([ray_bin, "start", *args], env=env, capture_output=True, text=True, timeout=90)
    assert proc.returncode == 0, "\n".join((proc.stdout + proc.stderr).splitlines()[-15:])


CLUSTER_NODE_PIDS: list[int] = []
# the head's Ray Client server port (ray://127.0.0.1:<port>)
CLIENT_PORT: list[int] = []


def _free_port() -> int:
    """A free TCP port on loopback (ephemeral range: outside Ray's worker ports 10002-19999)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _advertised_ip() -> str:
    return str(ray.util.get_node_ip_address())


# A multi-node Ray cluster advertises the machine's routable address, never loopback. The tests send traffic
# to loopback only, so the cluster runs inside a private network namespace (only `lo`) that the test
# makes itself: there Ray's address is 127.0.0.1. Outside one, the cluster tests skip and
# test_cluster_suite_runs_in_a_private_network_namespace re-runs this module inside one.
IN_PRIVATE_NETNS = os.environ.get("QF_RAY_NETNS") == "1"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    """GCS address of a running two-node cluster (one CPU per node)."""
    if not Path("/proc/self/cmdline").exists():
        pytest.skip("finds the cluster's processes through /proc")
    if not _advertised_ip().startswith("127."):
        pytest.skip(f"Ray would advertise {_advertised_ip()}; the cluster runs in a private network namespace "
                    "(test_cluster_suite_runs_in_a_private_network_namespace)")
    temp_dir = tmp_path_factory.mktemp("ray")
    # the Ray Client server starts a server process per client; on a loaded machine that takes more than
    # its default 30 s
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0",
           "RAY_CLIENT_SERVER_CHECK_CHANNEL_TIMEOUT_S": "300"}
    CLIENT_PORT[:] = [_free_port()]
    try:
        _ray_cli("--head", "--port", "0", "--num-cpus", "1", "--temp-dir", str(temp_dir),
                 "--include-dashboard", "false", "--disable-usage-stats",
                 "--ray-client-server-port", str(CLIENT_PORT[0]), env=env)
        address = (temp_dir / "ray_current_cluster").read_text().strip()
        head = set(_ray_pids(temp_dir))
        _ray_cli("--address", address, "--num-cpus", "1", "--temp-dir", str(temp_dir), env=env)
        # the second node's own processes (its raylet and agents): what a lost machine takes with it
        CLUSTER_NODE_PIDS[:] = sorted(set(_ray_pids(temp_dir)) - head)
        yield address
    finally:
        for _ in range(2):  # the raylets restart nothing once the GCS is gone; a second pass catches stragglers
            for pid in _ray_pids(temp_dir):
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.5)


@pytest.fixture(autouse=True)
def _no_leftover_ray():
    yield
    if ray.is_initialized():
        ray.shutdown()


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An experiment folder whose signal is a local file next to it."""
    root = tmp_path_factory.mktemp("project")
    (root / "strategies").mkdir()
    (root / "strategies" / "drv_sma.py").write_text(DRIVER_ONLY)
    (root / "sweep.yaml").write_text(yaml.safe_dump(EXPERIMENT))
    return root


def _experiment(project: Path, **executor):
    return load_experiment(project / "sweep.yaml",
                           overrides=[f"execution.executor.{k}={v}" for k, v in executor.items()])


# ------------------------------------------------------------------ without a cluster


def test_connect_errors_are_one_line() -> None:
    auth = ConnectionError("Failed to connect to Ray cluster at 10.0.0.1:6379")
    auth.__cause__ = ray.exceptions.AuthenticationError("RPC error: InvalidAuthToken: token is missing")
    for exc, expected in [
        (ConnectionError("Could not find any running Ray instance. Please specify ..."), "no Ray cluster is running"),
        (auth, "requires authentication"),
        (RuntimeError("Failed to connect to GCS\nmore"), "cannot connect to Ray: RuntimeError: Failed to connect"),
        # Ray Client relays the server's traceback: the reason is its last line
        (ConnectionAbortedError("Initialization failure from server:\nTraceback (most recent call last):\n  File "
                                "\"proxier.py\", line 1\nRuntimeError: Proxy failed to Connect to backend!\n"),
         "Initialization failure from server: RuntimeError: Proxy failed to Connect to backend!"),
    ]:
        err = connect_error("10.0.0.1:6379", exc)
        assert expected in str(err) and "\n" not in str(err) and err.exit_code == 1


def _gcs_running() -> bool:
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            # "pid (comm) state ...": a zombie (Z) is the dead GCS of a Ray instance that an earlier test in
            # this process shut down and that nothing reaped yet; it serves nothing `address: auto` could join
            comm, rest = (entry / "stat").read_text().rsplit(")", 1) if entry.name.isdigit() else ("", "")
            if comm.split("(", 1)[-1] == "gcs_server" and rest.split()[0] != "Z":
                return True
    return False


def test_no_cluster_at_auto_is_one_line_exit_1(project: Path, tmp_path: Path) -> None:
    if _gcs_running():  # `address: auto` also finds Ray instances by their processes
        pytest.skip("another Ray instance runs on this machine: address auto would join it")
    exp = tmp_path / "auto.yaml"
    raw = {**EXPERIMENT, "signal": {"type": "sma_cross", "params": {"fast": 10, "slow": 50}},
           "execution": {"executor": {"kind": "ray", "address": "auto"}}, "report": {"dir": str(tmp_path)}}
    exp.write_text(yaml.safe_dump(raw))
    # RAY_TMPDIR: where `address: auto` looks for a cluster started on this machine (none there)
    env = {**os.environ, "RAY_TMPDIR": str(tmp_path), "RAY_ADDRESS": ""}
    env.pop("RAY_ADDRESS")
    proc = subprocess.run([sys.executable, "-m", "qf.cli.main", "run", str(exp)], env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr
    err = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    assert "Traceback" not in proc.stderr
    assert [line for line in err if "execution.executor.address 'auto': no Ray cluster is running" in line], err


def test_version_mismatch_message_names_node_and_versions() -> None:
    driver = {"qf": "0.1.0", "python": "3.11.4", "plugins": {"acme": "1.2"}}
    same = {**driver, "node": "n1", "ip": "10.0.0.2"}
    check_versions(driver, same)
    with pytest.raises(ClusterError) as info:
        check_versions(driver, {**same, "python": "3.12.1", "plugins": {}})
    msg = str(info.value)
    assert msg.startswith("Ray node n1 (10.0.0.2) runs Python 3.12.1, plugin acme (not installed), the driver "
                          "Python 3.11.4, acme 1.2") and "\n" not in msg


def test_runtime_env_ships_local_files_and_plugin_lists(project: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("QF_PLUGINS_BLOCK", "acme")
    raw = yaml.safe_load((project / "sweep.yaml").read_text())
    assert local_files(raw, project) == {"strategies/drv_sma.py": project / "strategies" / "drv_sma.py"}
    env = job_runtime_env(raw, project, {"pip": ["x"], "env_vars": {"A": "1"}}, tmp_path / "job")
    assert env["pip"] == ["x"] and env["env_vars"] == {"QF_PLUGINS_BLOCK": "acme", "A": "1"}
    assert (Path(env["working_dir"]) / "strategies" / "drv_sma.py").read_text() == DRIVER_ONLY
    # the user's own working_dir wins; absolute paths are not copied
    assert "working_dir" not in job_runtime_env({"t": "/abs/x.py:C"}, None, None, tmp_path / "j2")
    assert job_runtime_env(raw, project, {"working_dir": "w"}, tmp_path / "j3")["working_dir"] == "w"


# ------------------------------------------------------------------ on the cluster


def test_sweep_on_the_cluster_matches_the_local_pool_and_puts_the_bars_once(cluster, project, monkeypatch) -> None:
    local = _experiment(project, n_jobs=1)
    bars = local.data.load()
    expected = evaluate_grid(local, bars, grid_of(local))

    puts: list[type] = []
    real_put = ray.put
    monkeypatch.setattr(ray, "put", lambda value, **kw: puts.append(type(value)) or real_put(value, **kw))
    exp = _experiment(project, kind="ray", address=cluster, n_jobs=2)
    seen: list[int] = []
    table = evaluate_grid(exp, bars, grid_of(exp), progress=lambda done, total: seen.append(done))
    assert table.equals(expected)
    assert puts == [type(bars)]  # once per sweep, whatever the number of tasks
    assert seen[-1] == len(table) and seen == sorted(seen)


def test_ray_client_mode_matches_the_local_pool(cluster, project, tmp_path) -> None:
    """``address: ray://host:port``: `qf run` talks to the cluster through Ray Client only (in a process of
    its own, as a user's would be) and writes the sweep.parquet of the local pool."""
    import io

    from rich.console import Console

    from qf.research.sweep import run_sweep

    client = subprocess.run([sys.executable, "-m", "qf.cli.main", "run", str(project / "sweep.yaml"), "--out",
                             str(tmp_path / "client"), "--set", "execution.executor.kind=ray", "--set",
                             f"execution.executor.address=ray://127.0.0.1:{CLIENT_PORT[0]}"],
                            env={**os.environ, "RAY_AUTH_MODE": "disabled"}, capture_output=True, text=True,
                            timeout=300)
    assert client.returncode == 0, client.stdout + client.stderr
    run_sweep(_experiment(project, n_jobs=1), tmp_path / "local", Console(file=io.StringIO()))
    assert (tmp_path / "client" / "sweep.parquet").read_bytes() == (tmp_path / "local" / "sweep.parquet").read_bytes()


SLOW = DRIVER_ONLY.replace('name = "drv_sma"', '''name = "drv_sma"

    def compute(self, bars):
        import time

        time.sleep(0.5)  # long enough to take the cluster down mid-sweep
        return super().compute(bars)''')


def test_cluster_gone_mid_sweep_is_one_line_and_the_same_command_resumes(
        tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    """The whole cluster dies under a `qf run` sweep: one qf error line, exit 1, finished rows kept; the
    same sweep (here on the local pool: where it runs is not part of its fingerprint) resumes from them."""
    if not _advertised_ip().startswith("127."):
        pytest.skip("starts its own cluster: runs in the private network namespace with the cluster suite")
    temp_dir = tmp_path_factory.mktemp("rg")  # short: Ray's socket paths must stay under 108 bytes
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    (tmp_path / "strategies").mkdir()
    (tmp_path / "strategies" / "drv_sma.py").write_text(SLOW)
    try:
        # ports of its own: the module's cluster runs on this machine too
        ports = [str(_free_port()) for _ in range(3)]
        _ray_cli("--head", "--port", "0", "--num-cpus", "1", "--temp-dir", str(temp_dir),
                 "--include-dashboard", "false", "--disable-usage-stats", "--ray-client-server-port", ports[0],
                 "--dashboard-agent-listen-port", ports[1], "--metrics-export-port", ports[2], env=env)
        address = (temp_dir / "ray_current_cluster").read_text().strip()
        raw = {**EXPERIMENT, "execution": {"fill": "next_open", "fees": 0.001,
                                           "executor": {"kind": "ray", "address": address}},
               "report": {"dir": "reports", "tearsheet": False}}
        (tmp_path / "sweep.yaml").write_text(yaml.safe_dump(raw))
        driver = subprocess.Popen([sys.executable, "-m", "qf.cli.main", "run", "sweep.yaml"], cwd=tmp_path, env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        sweeps = tmp_path / "reports" / ".qf" / "sweeps"
        deadline = time.monotonic() + 300
        while not list(sweeps.glob("*/rows-*.json")) and driver.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        for _ in range(2):
            for pid in _ray_pids(temp_dir):  # the head's processes and workers: the cluster is gone
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.5)
        out, _ = driver.communicate(timeout=180)
    finally:
        for pid in _ray_pids(temp_dir):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
    assert driver.returncode == 1, out
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in out, out
    assert "the Ray cluster failed under the sweep" in errors[0] and "run the same command again to resume" in errors[0]
    kept = int(errors[0].split(" combinations are kept")[0].rsplit(" ", 3)[-3])
    assert kept >= 1 and list(sweeps.glob("*/rows-*.json"))

    again = subprocess.run([sys.executable, "-m", "qf.cli.main", "run", "sweep.yaml", "--set",
                            "execution.executor.kind=local"], cwd=tmp_path, env=env, capture_output=True, text=True,
                           timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"resumed {kept} of 9 combinations" in again.stdout, again.stdout


def test_driver_only_local_file_component_runs_on_the_cluster(cluster, project, monkeypatch) -> None:
    monkeypatch.setenv("QF_PLUGINS_BLOCK", "nothing_here")
    exp = _experiment(project, kind="ray", address=cluster)
    bars = exp.data.load()
    combos = grid_of(exp).to_dict("records")[:2]
    expected = evaluate_chunk(ComboTask(exp.raw, exp.path, bars, combos))
    # the workers see the experiment at a path that exists on no node: only the shipped copy can serve
    task = ComboTask(exp.raw, Path("/nowhere/sweep.yaml"), None, combos)
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    with ray_cluster.ray_executor_for(exp) as ex:
        assert ex.map(evaluate_chunk, [task], shared={"bars": bars}) == [expected]
        assert ex.map(_env_of, ["QF_PLUGINS_BLOCK"]) == ["nothing_here"]
    from qf.research.executors import RayExecutor

    with RayExecutor(cluster, handshake=False) as bare, pytest.raises(QfError, match="drv_sma.py' not found"):
        bare.map(evaluate_chunk, [task], shared={"bars": bars})
    # joining a connection this process already has: the runtime_env goes with each task instead (Ray
    # takes no local folder there: the component is found at the driver's path, on this machine)
    ray.init(address=cluster, include_dashboard=False, log_to_driver=False)
    with ray_cluster.ray_executor_for(exp) as joined:
        assert joined.map(_env_of, ["QF_PLUGINS_BLOCK"]) == ["nothing_here"]
        on_disk = ComboTask(exp.raw, exp.path, None, combos)
        assert joined.map(evaluate_chunk, [on_disk], shared={"bars": bars}) == [expected]
    assert ray.is_initialized()  # not ours to shut down


def test_a_node_with_other_versions_is_refused(cluster, monkeypatch) -> None:
    from qf.research.executors import RayExecutor

    real = ray_cluster.versions()
    monkeypatch.setattr(ray_cluster, "versions", lambda: {**real, "qf": "9.9.9"})
    with pytest.raises(ClusterError, match=r"^Ray node .* runs qf \d.*, the driver qf 9\.9\.9: install the same"):
        RayExecutor(cluster)
    assert not ray.is_initialized()  # refused: the connection is closed again


def test_experiments_accept_the_new_executor_fields(tmp_path: Path) -> None:
    raw = {**EXPERIMENT, "signal": {"type": "sma_cross"},
           "execution": {"executor": {"kind": "ray", "address": "auto", "max_retries": 5,
                                      "runtime_env": {"pip": ["acme==1.0"]}}}}
    (tmp_path / "x.yaml").write_text(yaml.safe_dump(raw))
    spec = load_experiment(tmp_path / "x.yaml").spec.execution.executor
    assert (spec.max_retries, spec.runtime_env) == (5, {"pip": ["acme==1.0"]})
    with pytest.raises(QfError, match="max_retries"):
        load_experiment(tmp_path / "x.yaml", overrides=["execution.executor.max_retries=-1"])


def test_readme_ray_section_validates(tmp_path: Path) -> None:
    import re

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Running on a Ray cluster", 1)[1].split("\n## ", 1)[0]
    block = re.findall(r"```yaml\n(.*?)```", section, re.S)[0]
    raw = {**EXPERIMENT, "signal": {"type": "sma_cross"}, **yaml.safe_load(block)}
    (tmp_path / "x.yaml").write_text(yaml.safe_dump(raw))
    spec = load_experiment(tmp_path / "x.yaml").spec.execution.executor
    assert (spec.kind, spec.address, spec.n_jobs, spec.max_retries) == ("ray", "auto", 16, 3)
    assert spec.runtime_env == {"env_vars": {"OMP_NUM_THREADS": "1"}}


def _slow(chunk: tuple[int, str]) -> tuple[int, str]:
    """Marks when and where it started and when it finished; takes long enough to be caught running."""
    index, folder = chunk
    node = ray.get_runtime_context().get_node_id()
    (Path(folder) / f"s-{index}-{node}").touch()
    time.sleep(2.0)
    (Path(folder) / f"f-{index}").touch()
    return index, node


def _running_on(folder: Path, node: str, timeout: float = 10.0) -> set[int]:
    """Chunks started on ``node`` less than a second ago and not finished (so surely still running)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = time.time()
        names = [f.name for f in folder.iterdir()]
        started = {int(n.split("-")[1]) for n in names
                   if n.startswith("s-") and n.endswith(node) and now - (folder / n).stat().st_mtime < 1.0}
        running = started - {int(n.split("-")[1]) for n in names if n.startswith("f-")}
        if running:
            return running
        time.sleep(0.05)
    return set()


def test_tasks_of_a_lost_node_are_retried_on_the_others(cluster, tmp_path) -> None:
    """Runs last in the module: it takes the second node down for good."""
    from qf.research.executors import RayExecutor

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    chunks = [(i, str(tmp_path)) for i in range(6)]
    done: dict[int, str] = {}
    caught: set[int] = set()
    with RayExecutor(cluster, max_retries=2, handshake=False) as ex:
        second = [n["NodeID"] for n in ray.nodes() if n["Alive"] and "node:__internal_head__" not in n["Resources"]]
        assert len(second) == 1 and CLUSTER_NODE_PIDS
        for index, (echo, node) in ex.imap(_slow, chunks):
            assert echo == index
            done[index] = node
            if len(done) == 1:  # mid-sweep: take the second node down while it runs a chunk
                caught = _running_on(tmp_path, second[0])
                for pid in _with_children(CLUSTER_NODE_PIDS):  # the raylet, its agents and workers
                    with contextlib.suppress(OSError):
                        os.kill(pid, signal.SIGKILL)
    assert sorted(done) == list(range(6))
    assert caught, "no task was running on the second node when it was killed"
    assert all(done[i] != second[0] for i in caught)  # finished elsewhere


@pytest.mark.skipif(IN_PRIVATE_NETNS, reason="already inside the private network namespace")
@pytest.mark.skipif(os.environ.get("QF_RAY_CLUSTER_TESTS") != "1",
                    reason="opt-in (QF_RAY_CLUSTER_TESTS=1): a two-node Ray cluster on a loaded 2-core machine "
                           "lost its driver (OwnerDiedError) once in a clean-clone CI run")
def test_cluster_suite_runs_in_a_private_network_namespace() -> None:
    """The cluster tests, run inside a network namespace of their own (loopback only, made here).

    Run them with ``QF_RAY_CLUSTER_TESTS=1 python -m pytest tests/research/test_ray_cluster.py``.
    """
    import shutil

    if _advertised_ip().startswith("127."):
        pytest.skip("Ray advertises loopback here: the cluster tests ran in this session")
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        pytest.skip("needs unshare and ip (util-linux, iproute2) to make a private network namespace")
    probe = subprocess.run(["unshare", "-rn", "true"], capture_output=True, timeout=30)
    if probe.returncode != 0:
        pytest.skip(f"cannot create a network namespace here: {probe.stderr.decode(errors='replace').strip()}")
    cmd = (f"ip link set lo up && exec {sys.executable} -m pytest -p no:cacheprovider {__file__} "
           "-k 'not private_network_namespace'")
    proc = subprocess.run(["unshare", "-rn", "sh", "-c", cmd], env={**os.environ, "QF_RAY_NETNS": "1"},
                          capture_output=True, text=True, timeout=600)
    tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-30:])
    assert proc.returncode == 0, tail
    assert " passed" in proc.stdout and "skipped" not in proc.stdout.splitlines()[-1], tail
