"""What a sweep needs to run on a Ray cluster it does not own: connection errors as qf errors, the job's
``runtime_env`` (local-file components and the plugin allow/block lists shipped with it), a version
handshake with every node, and Ray's task failures translated into one line.

:class:`qf.research.executors.RayExecutor` calls these; :func:`ray_executor_for` builds one from an
experiment's ``execution.executor`` section::

    with ray_executor_for(exp) as ex:
        rows = ex.map(evaluate_chunk, tasks, shared={"bars": bars})
"""

from __future__ import annotations

import os
import platform
import shutil
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any

from qf.errors import QfError
from qf.registry import get_registry, loaded
from qf.research.executors import RayExecutor

__all__ = ["ClusterError", "connect_error", "task_error", "local_files", "job_runtime_env", "versions",
           "check_versions", "ray_executor_for"]

# environment variables a worker must see as the driver does (which plugins load)
SHIPPED_ENV = ("QF_PLUGINS_ALLOW", "QF_PLUGINS_BLOCK")


class ClusterError(QfError):
    """The Ray cluster could not be reached or failed under the sweep: exit code 1 (the input was fine).

    Example::

        raise ClusterError("execution.executor.address 'auto': no Ray cluster is running there")
    """

    exit_code = 1


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) > 1 and lines[0].startswith("Initialization failure from server"):
        # Ray Client relays the server's traceback: its last line is the reason
        return f"{lines[0].rstrip(':')}: {lines[-1]}"
    return lines[0] if lines else type(exc).__name__


def connect_error(address: str, exc: BaseException) -> ClusterError:
    """One line for a failed ``ray.init(address=...)``: what is wrong and what to do.

    Example:
        >>> print(connect_error("auto", ConnectionError("Could not find any running Ray instance.")))
        execution.executor.address 'auto': no Ray cluster is running there (start one with ...
    """
    where = f"execution.executor.address {address!r}"
    chain: list[BaseException] = []
    cause: BaseException | None = exc
    while cause is not None and len(chain) < 10:  # Ray wraps the real reason (a ConnectionError around it)
        chain.append(cause)
        cause = cause.__cause__ or cause.__context__
    text = str(exc)
    if any(type(e).__name__ == "AuthenticationError" or "InvalidAuthToken" in str(e) for e in chain):
        return ClusterError(f"{where}: the cluster requires authentication: set RAY_AUTH_MODE=token and "
                            "RAY_AUTH_TOKEN (or RAY_AUTH_TOKEN_PATH) to the cluster's token")
    if "Could not find any running Ray instance" in text or "could not find" in text.lower():
        return ClusterError(f"{where}: no Ray cluster is running there "
                            "(start one with `ray start --head`, or use address: local)")
    return ClusterError(f"{where}: cannot connect to Ray: {type(exc).__name__}: {_first_line(exc)}")


def task_error(ray: Any, exc: BaseException) -> BaseException:
    """What a failed task means to the user: its own qf error, or a one-line :class:`ClusterError`.

    A task that raised a :class:`QfError` (bad params found on the worker) re-raises that error; a lost
    node, worker or object after ``max_retries`` retries, or a cluster that went away, becomes a
    :class:`ClusterError`; anything else (a bug) is returned unchanged so that its traceback is kept.
    """
    exceptions = ray.exceptions
    lost = (exceptions.RaySystemError, exceptions.WorkerCrashedError, exceptions.NodeDiedError,
            exceptions.ObjectLostError, exceptions.OwnerDiedError, exceptions.LocalRayletDiedError,
            exceptions.RuntimeEnvSetupError, exceptions.TaskUnschedulableError, exceptions.AuthenticationError,
            ConnectionError)
    cause = getattr(exc, "cause", None) if isinstance(exc, exceptions.RayTaskError) else exc
    if isinstance(cause, QfError):
        return cause
    if isinstance(cause, lost):  # also a task whose input (the shared bars) could not be fetched
        name = type(cause).__name__
        return ClusterError(f"the Ray cluster failed under the sweep: {name}: {_first_line(cause)}")
    return exc


def local_files(raw: Any, base_dir: Path | None) -> dict[str, Path]:
    """Local-file components (``type: strategies/x.py:Class``) of an experiment: relative path -> file.

    Files are looked up as :func:`qf.registry.load_local` does; a worker finds the shipped copy through
    that relative path in its working directory. Absolute paths and paths with ``..`` are left out:
    those must exist at the same path on every node.

    Example:
        >>> local_files({"signal": {"type": "no/such.py:X"}}, None)
        {}
    """
    found: dict[str, Path] = {}

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)
        elif isinstance(node, str) and ":" in node:
            target = node.rpartition(":")[0]
            rel = PurePosixPath(target)
            if not target.endswith(".py") or rel.is_absolute() or ".." in rel.parts:
                return
            candidates = [Path(target)]
            if base_dir is not None:
                candidates = [base_dir / target, Path(target), base_dir.parent / target]
            path = next((p for p in candidates if p.is_file()), None)
            if path is not None:
                found[target] = path

    walk(raw)
    return found


def job_runtime_env(raw: Any, base_dir: Path | None, user_env: dict[str, Any] | None,
                    work_dir: Path) -> dict[str, Any]:
    """The ``runtime_env`` a sweep's Ray job runs in.

    The user's ``execution.executor.runtime_env`` (``pip:``, ``py_modules:``, ``env_vars:`` ...) is kept;
    added to it: the plugin allow/block variables set on the driver, and (unless the user chose a
    ``working_dir``) a working directory holding copies of the local-file components at their relative
    paths, built in ``work_dir``.

    Example:
        >>> job_runtime_env({}, None, {"pip": ["numpy"]}, Path("/tmp/unused"))["pip"]
        ['numpy']
    """
    env = dict(user_env or {})
    env_vars = {k: os.environ[k] for k in SHIPPED_ENV if k in os.environ}
    env_vars.update(env.get("env_vars") or {})
    if env_vars:
        env["env_vars"] = env_vars
    files = local_files(raw, base_dir)
    if files and "working_dir" not in env:
        for rel, path in files.items():
            dest = work_dir / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, dest)
        env["working_dir"] = str(work_dir)
    return env


def versions() -> dict[str, Any]:
    """This process's qf and Python versions and its loaded plugins (name -> version).

    Example:
        >>> sorted(versions())
        ['plugins', 'python', 'qf']
    """
    import qf

    registry = get_registry(allow_broken=True)
    plugins = {name: version for name, version in loaded(registry.pm).items() if version != "builtin"}
    return {"qf": qf.__version__, "python": platform.python_version(), "plugins": plugins}


def _node_versions() -> dict[str, Any]:
    return {**versions(), "node": os.uname().nodename, "ip": _node_ip()}


def _node_ip() -> str:
    try:
        import ray

        return str(ray.util.get_node_ip_address())
    except Exception:  # only used to name the node in a message
        return "?"


def check_versions(driver: dict[str, Any], worker: dict[str, Any]) -> None:
    """Refuse a worker node whose qf, Python or plugin versions differ from the driver's.

    Example:
        >>> try:
        ...     check_versions({"qf": "1", "python": "3.11.4", "plugins": {}},
        ...                    {"qf": "2", "python": "3.11.4", "plugins": {}, "node": "n1", "ip": "10.0.0.2"})
        ... except ClusterError as exc:
        ...     print(str(exc)[:55])
        Ray node n1 (10.0.0.2) runs qf 2, the driver qf 1: inst
    """
    diffs = []
    for key in ("qf", "python"):
        if driver[key] != worker[key]:
            diffs.append((f"{'Python' if key == 'python' else 'qf'} {worker[key]}",
                          f"{'Python' if key == 'python' else 'qf'} {driver[key]}"))
    for name, version in sorted(driver["plugins"].items()):
        theirs = worker["plugins"].get(name)
        if theirs != version:
            diffs.append((f"plugin {name} {theirs or '(not installed)'}", f"{name} {version}"))
    if diffs:
        theirs = ", ".join(d[0] for d in diffs)
        ours = ", ".join(d[1] for d in diffs)
        raise ClusterError(f"Ray node {worker.get('node', '?')} ({worker.get('ip', '?')}) runs {theirs}, the driver "
                           f"{ours}: install the same versions on every node (or ship them with "
                           "execution.executor.runtime_env)")


def handshake(ray: Any, timeout: float = 120.0) -> None:
    """Ask every alive node with CPUs for its versions (in the job's runtime_env) and compare."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    remote = ray.remote(_node_versions)
    refs = [remote.options(num_cpus=0, max_retries=1,
                           scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)).remote()
            for node in ray.nodes() if node.get("Alive") and node.get("Resources", {}).get("CPU", 0) > 0]
    driver = versions()
    try:
        answers = ray.get(refs, timeout=timeout)
    except ray.exceptions.GetTimeoutError:
        raise ClusterError(f"the Ray cluster's nodes did not answer the version check within {timeout:.0f} s "
                           "(a node that cannot start workers: check `ray status` and the job's runtime_env)") from None
    except Exception as exc:  # a node that cannot even start the job's workers (runtime_env, crash)
        raise task_error(ray, exc) from None
    for worker in answers:
        check_versions(driver, worker)


def ray_executor_for(exp: Any) -> Any:
    """A :class:`~qf.research.executors.RayExecutor` for an experiment's ``execution.executor`` section.

    The job ships the experiment's local-file components and the plugin allow/block lists (see
    :func:`job_runtime_env`), and each node's versions are checked before any work is sent.
    """
    spec = exp.spec.execution.executor
    work_dir = Path(tempfile.mkdtemp(prefix="qf-ray-job-"))
    try:
        base_dir = exp.path.parent if exp.path is not None else None
        env = job_runtime_env(exp.raw, base_dir, spec.runtime_env, work_dir)
        ex = RayExecutor(spec.address, num_cpus=spec.n_jobs, n_jobs=spec.n_jobs, runtime_env=env or None,
                         max_retries=spec.max_retries)
    except BaseException:
        shutil.rmtree(work_dir, ignore_errors=True)
        raise
    # Ray uploads the working directory when it connects, or (joining a job already running in this
    # process) when the first task goes out: the copy lives until the executor is closed
    ex.on_close.append(lambda: shutil.rmtree(work_dir, ignore_errors=True))
    return ex

