"""Executors that fan chunks of a sweep out to worker processes, sharing big arrays only once.

Both executors have the same API::

    with LocalExecutor(n_jobs=2) as ex:
        results = ex.map(func, chunks, shared={"close": close2d})

``func(chunk, **shared)`` runs once per chunk in a worker and must be a module-level function
(it is pickled by reference). ``shared`` values travel once per executor, not once per chunk: numeric
arrays are written to memory-mapped ``.npy`` files (``LocalExecutor``) and are read-only inside ``func``;
any other picklable object (a ``Bars``) is pickled once to a file each worker loads once; ``RayExecutor``
puts every value into the object store once and passes the reference. Each chunk's message carries only
the chunk itself and a few file names or object references. ``map`` returns results in chunk order;
``imap`` yields ``(chunk index, result)`` as chunks finish (idle workers take the next chunk, so a
progress bar or a checkpoint can follow the work without waiting for waves).

Numba kernels called from ``func`` should be ``cache=True`` so that workers load compiled code from
disk instead of compiling it again.

Workers die with the process that owns the pool, even when it is killed outright (SIGKILL, OOM killer):
each worker watches a pipe whose only writer is the owner and exits when it closes, and on Linux the
kernel also kills it when its parent dies (``PR_SET_PDEATHSIG``). Once the workers are gone the
forkserver and the resource tracker see their last client close and exit too. The shared-array folder of
a killed owner is removed by the next pool that shares arrays in the same temp folder. A local Ray
instance ties its head processes to the driver itself; a small reaper process kills the rest (its per-node
agents) when the driver dies without closing the executor (Linux; elsewhere only Ray's own clean-up).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import pickle
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Protocol, TypeVar, runtime_checkable

import numpy as np

from qf.processes import die_with_parent
from qf.report.writer import owned_name, remove_stale

__all__ = ["Executor", "LocalExecutor", "RayExecutor"]

R = TypeVar("R")


@runtime_checkable
class Executor(Protocol):
    """What sweeps need from an executor: a worker count and an ordered ``map``."""

    n_workers: int

    def map(
        self,
        func: Callable[..., R],
        chunks: Iterable[Any],
        shared: Mapping[str, Any] | None = None,
    ) -> list[R]: ...

    def close(self) -> None: ...


def _check_shared(shared: Mapping[str, Any] | None) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name, value in (shared or {}).items():
        if not name.isidentifier():
            raise ValueError(f"shared array name {name!r} must be a valid Python identifier")
        if isinstance(value, np.ndarray) and value.dtype == object:
            # would be pickled element by element and could not be memory-mapped
            raise TypeError(f"shared array {name!r} must be a numeric numpy array")
        values[name] = value
    return values


def _is_array(value: Any) -> bool:
    return isinstance(value, np.ndarray)


def map_in_order(items: Iterator[tuple[int, R]], n: int) -> list[R]:
    """Results of an ``imap`` put back into chunk order.

    Example:
        >>> map_in_order(iter([(1, "b"), (0, "a")]), 2)
        ['a', 'b']
    """
    out: list[Any] = [None] * n
    for i, result in items:
        out[i] = result
    return out


# ---------------------------------------------------------------- local process pool

_WORKER_ARRAYS: dict[str, Any] = {}
# shared values a worker keeps loaded: the latest ones (an executor serving many sweeps, such as every fold
# of a walk-forward, shares new data for each; the older ones are not needed again)
_WORKER_KEEP = 16


def _load_shared(path: str) -> Any:
    # Opened once per worker process and then reused by every chunk that worker runs.
    value = _WORKER_ARRAYS.pop(path, None)
    if value is not None:
        _WORKER_ARRAYS[path] = value  # most recently used last
    else:
        while len(_WORKER_ARRAYS) >= _WORKER_KEEP:
            _WORKER_ARRAYS.pop(next(iter(_WORKER_ARRAYS)))
        if path.endswith(".pkl"):
            with open(path, "rb") as f:
                value = pickle.load(f)
        else:
            # asarray drops the np.memmap subclass (numba types plain ndarrays) without copying
            value = np.asarray(np.load(path, mmap_mode="r"))
        _WORKER_ARRAYS[path] = value
    return value


def _run_local_task(func: Callable[..., R], chunk: Any, paths: Mapping[str, str]) -> R:
    return func(chunk, **{name: _load_shared(path) for name, path in paths.items()})


# how often a worker without a lifeline (fork start method) checks that its parent still lives
PARENT_POLL_SECONDS = 0.5
SHARED_PREFIX = "qf-shared-"


def _watch_owner(lifeline: Connection | None, parent: int) -> None:
    """Return once the pool's owner is gone: its end of ``lifeline`` closed, or (no lifeline) we were orphaned."""
    if lifeline is None:
        while os.getppid() == parent:
            time.sleep(PARENT_POLL_SECONDS)
        return
    try:
        while True:
            lifeline.recv_bytes()  # the owner never sends: this blocks, without the GIL, until EOF
    except (EOFError, OSError):
        return


def _orphan_guard(lifeline: Connection | None, parent: int) -> None:
    _watch_owner(lifeline, parent)
    os._exit(1)  # no cleanup to do: the owner, who wanted the results, is gone


def _init_worker(lifeline: Connection | None, parent: int) -> None:
    """Worker initializer: die with the pool's owner, however it dies.

    The kernel's parent-death signal is immediate but only knows the direct parent (the forkserver, for
    ``forkserver`` pools) and only exists on Linux; the lifeline thread covers the owner itself everywhere.
    """
    die_with_parent()
    threading.Thread(target=_orphan_guard, args=(lifeline, parent), name="qf-orphan-guard", daemon=True).start()


class _InOrder:
    """``map`` for an executor that streams ``imap`` results: the same results, in chunk order."""

    def imap(self, func: Callable[..., R], chunks: Iterable[Any],
             shared: Mapping[str, Any] | None = None) -> Iterator[tuple[int, R]]:
        raise NotImplementedError

    def map(
        self,
        func: Callable[..., R],
        chunks: Iterable[Any],
        shared: Mapping[str, Any] | None = None,
    ) -> list[R]:
        """Run ``func(chunk, **shared)`` for every chunk; results in chunk order."""
        chunk_list = list(chunks)
        return map_in_order(self.imap(func, chunk_list, shared), len(chunk_list))


class LocalExecutor(_InOrder):
    """Process-pool executor; shared arrays travel once, as memory-mapped ``.npy`` files.

    Args:
        n_jobs: worker processes; -1 means one per CPU. ``n_jobs=1`` runs chunks in-process.
        mp_context: multiprocessing start method. ``spawn`` (default) is safe with numba's thread
            pools and on every OS; ``forkserver`` starts faster on Linux.
        tmp_dir: where the shared ``.npy`` files go (default: the system temp dir).

    With ``spawn``/``forkserver`` the workers re-import the calling script, so a script that creates
    a pool needs the usual ``if __name__ == "__main__":`` guard (tests and installed CLIs are fine).

    Example:
        >>> with LocalExecutor(n_jobs=1) as ex:
        ...     ex.map(_demo_sum_rows, [(0, 1), (1, 2)], shared={"a": np.arange(6.0).reshape(2, 3)})
        [3.0, 12.0]
    """

    def __init__(self, n_jobs: int = -1, *, mp_context: str = "spawn", tmp_dir: str | None = None) -> None:
        if n_jobs == -1:
            n_jobs = os.cpu_count() or 1
        if n_jobs < 1:
            raise ValueError(f"n_jobs must be >= 1 or -1, got {n_jobs}")
        self.n_workers = int(n_jobs)
        self._mp_context = mp_context
        self._tmp_parent = tmp_dir
        self._pool: ProcessPoolExecutor | None = None
        self._lifeline: tuple[Connection, ...] = ()
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        # id(value) -> (value, path); holding the value keeps its id from being reused
        self._files: dict[int, tuple[Any, str]] = {}
        self._n_shared = 0  # file names are never reused: a worker caches a loaded file by its name

    def _share(self, arr: Any) -> str:
        entry = self._files.get(id(arr))
        if entry is not None and entry[0] is arr:
            return entry[1]
        if self._tmp is None:
            parent = self._tmp_parent or tempfile.gettempdir()
            remove_stale(Path(parent), SHARED_PREFIX)  # what pools of killed processes left behind
            # the name records this process, so that a later pool can tell the folder was abandoned
            suffix = owned_name("").removeprefix(".tmp-")
            self._tmp = tempfile.TemporaryDirectory(prefix=SHARED_PREFIX, suffix=suffix, dir=parent)
            weakref.finalize(self, self._tmp.cleanup)
        n, self._n_shared = self._n_shared, self._n_shared + 1
        if _is_array(arr):
            path = os.path.join(self._tmp.name, f"a{n}.npy")
            np.save(path, np.ascontiguousarray(arr))
        else:
            path = os.path.join(self._tmp.name, f"o{n}.pkl")
            with open(path, "wb") as f:
                pickle.dump(arr, f, protocol=pickle.HIGHEST_PROTOCOL)
        self._files[id(arr)] = (arr, path)
        return path

    def _get_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            ctx = multiprocessing.get_context(self._mp_context)
            lifeline = None
            if self._mp_context != "fork":  # a forked worker would inherit the writer and never see EOF
                # the workers get the reading end; this process keeps the only writer until close()
                self._lifeline = ctx.Pipe(duplex=False)
                lifeline = self._lifeline[0]
            self._pool = ProcessPoolExecutor(
                max_workers=self.n_workers, mp_context=ctx, initializer=_init_worker, initargs=(lifeline, os.getpid())
            )
        return self._pool

    def imap(
        self,
        func: Callable[..., R],
        chunks: Iterable[Any],
        shared: Mapping[str, Any] | None = None,
    ) -> Iterator[tuple[int, R]]:
        """Yield ``(index, func(chunk, **shared))`` as chunks finish (in chunk order when in-process).

        Example:
            >>> with LocalExecutor(n_jobs=1) as ex:
            ...     list(ex.imap(_demo_sum_rows, [(0, 1)], shared={"a": np.ones((1, 3))}))
            [(0, 3.0)]
        """
        values = _check_shared(shared)
        chunk_list = list(chunks)
        if self.n_workers == 1:
            # Same read-only contract as in the workers, without the process hop.
            views = {}
            for name, value in values.items():
                if _is_array(value):
                    value = value.view()
                    value.flags.writeable = False
                views[name] = value
            for i, chunk in enumerate(chunk_list):
                yield i, func(chunk, **views)
            return
        paths = {name: self._share(value) for name, value in values.items()}
        pool = self._get_pool()
        # the pool's queue hands the next chunk to whichever worker is idle
        futures = {pool.submit(_run_local_task, func, chunk, paths): i for i, chunk in enumerate(chunk_list)}
        try:
            for future in as_completed(futures):
                yield futures[future], future.result()
        finally:
            for future in futures:  # the caller stopped early (an error): drop what has not started
                future.cancel()

    @property
    def started(self) -> bool:
        """Whether the worker processes exist (a ``fork`` pool is forked from this process as it is now)."""
        return self._pool is not None

    def release(self, value: Any) -> None:
        """Delete the shared file of ``value`` (shared by an earlier ``map``/``imap``); the pool lives on.

        An executor that serves many sweeps (every fold of a walk-forward) calls this once a sweep is done,
        so that its data does not pile up in the temp folder until ``close``.
        """
        entry = self._files.pop(id(value), None)
        if entry is not None:
            with contextlib.suppress(OSError):
                os.unlink(entry[1])  # workers that loaded it drop it as newer values come (_WORKER_KEEP)

    def close(self) -> None:
        """Stop the workers and delete the shared files."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        for conn in self._lifeline:
            conn.close()
        self._lifeline = ()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
        self._files.clear()

    def __enter__(self) -> LocalExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _demo_sum_rows(chunk: tuple[int, int], a: np.ndarray) -> float:
    """Tiny work item used by the docstring examples."""
    return float(a[chunk[0] : chunk[1]].sum())


# ---------------------------------------------------------------- Ray


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:  # optional extra: pip install "qf[ray]"
        raise ImportError("RayExecutor needs ray: pip install 'qf[ray]' (or pip install ray)") from exc
    return ray


@contextlib.contextmanager
def _loopback_only() -> Iterator[None]:
    """Make a local Ray instance bind to and advertise 127.0.0.1 only.

    Ray replaces a requested loopback node address with the machine's routable IP and listens on all
    interfaces unless its cluster mode is off (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, read from the
    environment at import time). The variable is set for the processes ``ray.init`` spawns and the
    already-imported constant is patched for this one; both are restored afterwards so a later
    connection to a real cluster behaves normally.
    """
    var = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
    old_env = os.environ.get(var)
    os.environ[var] = "0"
    constants: Any = None
    old_flag = None
    try:
        from ray._private import ray_constants as constants

        old_flag = constants.ENABLE_RAY_CLUSTER
        constants.ENABLE_RAY_CLUSTER = False
    except (ImportError, AttributeError):  # private API moved: the env var still covers child processes
        constants = None
    try:
        yield
    finally:
        if old_env is None:
            os.environ.pop(var, None)
        else:
            os.environ[var] = old_env
        if constants is not None:
            constants.ENABLE_RAY_CLUSTER = old_flag


# Run as its own process next to a local Ray instance: Ray ties its head processes (gcs_server, raylet,
# workers) to the driver, but its per-node agents survive a driver killed by SIGKILL. The reaper notes the
# driver's descendants twice a second; when the driver's end of the pipe closes without a word, the
# driver died, and the reaper kills what it noted (and their children). One byte on the pipe stands it down.
_REAPER = r"""
import os, select, signal, sys
signal.signal(signal.SIGINT, signal.SIG_IGN)
owner, fd, me = int(sys.argv[1]), int(sys.argv[2]), os.getpid()

def stat(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
    except OSError:
        return None
    fields = s[s.rindex(")") + 2:].split()
    return fields[0], int(fields[1]), fields[19]

def descendants(roots):
    kids = {}
    for name in os.listdir("/proc"):
        st = stat(int(name)) if name.isdigit() else None
        if st:
            kids.setdefault(st[1], []).append((int(name), st[2]))
    out, todo = {}, list(roots)
    while todo:
        for pid, start in kids.get(todo.pop(), []):
            if pid != me and pid not in out:
                out[pid] = start
                todo.append(pid)
    return out

seen = {}
ready = select.poll()  # not select(): the driver's pipe may be a descriptor above 1023
ready.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
while True:
    if ready.poll(500):
        if os.read(fd, 1):
            sys.exit(0)
        break
    seen.update(descendants([owner]))
seen.update(descendants(list(seen)))
for pid, start in seen.items():
    st = stat(pid)
    if st and st[2] == start and st[0] not in "ZX":
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
"""


class _Reaper:
    """Kills a local Ray instance's processes if this (driver) process dies without closing it (Linux)."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None
        self._w: int | None = None
        if not os.path.exists("/proc/self/stat"):  # elsewhere Ray's own reaper is all there is
            return
        r, self._w = os.pipe()  # not inheritable: Ray's processes never hold the driver's end
        try:
            self._proc = subprocess.Popen([sys.executable, "-c", _REAPER, str(os.getpid()), str(r)], pass_fds=(r,),
                                          start_new_session=True, stdin=subprocess.DEVNULL)
        finally:
            os.close(r)

    def stand_down(self) -> None:
        """Ray was shut down properly: let the reaper exit without killing anything."""
        if self._w is None:
            return
        try:
            os.write(self._w, b"x")
        finally:
            os.close(self._w)
            self._w = None
        if self._proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=5)


def _abandon(ray: Any) -> None:
    """Leave a Ray connection whose cluster is gone without waiting on it.

    ``ray.shutdown()`` (also registered to run at interpreter exit) would wait for the dead GCS until Ray
    ends the process itself (exit code 1, a log line) before qf could print its error, and finalising the
    interpreter under Ray's still running client threads can crash. So the connection is left as it is,
    and at exit the process ends at once with exit code 1 (what Ray would do a minute later), after
    flushing its output.
    """
    import atexit

    def exit_now() -> None:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(1)

    with contextlib.suppress(Exception):
        atexit.unregister(ray.shutdown)
    atexit.register(exit_now)  # runs before anything registered earlier


def _run_ray_task(func: Callable[..., R], chunk: Any, names: list[str], *values: Any) -> R:
    # Object refs passed as top-level arguments arrive resolved (arrays as zero-copy, read-only views).
    return func(chunk, **dict(zip(names, values, strict=True)))


# how often a streaming map re-reads the cluster's size (an autoscaled cluster grows under a sweep)
RESIZE_SECONDS = 2.0
# a cluster whose GCS has not accepted a connection for this long is gone: the sweep stops with a qf error
# (Ray itself would end the driver process after 60 s with only a log line, see _GcsWatch)
GCS_LOST_SECONDS = 10.0


class _GcsWatch:
    """Tells when the cluster's GCS (its head) stopped accepting connections.

    Ray's driver waits up to ``gcs_rpc_server_reconnect_timeout_s`` (60 s) for a lost GCS and then ends the
    whole process; the sweep would lose the chance to say what happened. Between task results the executor
    probes the GCS port (a TCP connect) and gives up on the cluster after :data:`GCS_LOST_SECONDS` without
    an answer. Not used in client mode (``ray://``), where the GCS port need not be reachable from the
    driver and a lost cluster breaks the client connection instead.
    """

    def __init__(self, address: str | None) -> None:
        self.address = address
        self._down_since: float | None = None

    def down(self) -> bool:
        """Whether the GCS refuses connections right now (never, without an address to probe)."""
        if not self.address:
            return False
        import socket

        host, _, port = self.address.rpartition(":")
        try:
            with socket.create_connection((host, int(port)), timeout=1.0):
                self._down_since = None
                return False
        except (OSError, ValueError):
            self._down_since = self._down_since or time.monotonic()
            return True

    def lost(self) -> bool:
        """Down for :data:`GCS_LOST_SECONDS` (a restarting head comes back within that)."""
        return self.down() and time.monotonic() - (self._down_since or 0.0) >= GCS_LOST_SECONDS


class RayExecutor(_InOrder):
    """Ray executor with the same ``map`` API; every shared value is ``ray.put`` once per executor.

    Args:
        address: ``"local"`` (or None) starts a private local Ray instance that listens on
            127.0.0.1 only, with the dashboard off; ``"auto"`` joins the cluster started on this machine
            with ``ray start``; ``"ray://host:10001"`` connects through Ray Client; anything else is passed
            to ``ray.init(address=...)``. If Ray is already initialised in this process it is reused and
            left running on close. A cluster that cannot be reached is a one-line
            :class:`~qf.research.ray_cluster.ClusterError` (exit code 1).
        num_cpus: CPUs for a local instance (default: all).
        n_jobs: at most this many tasks run at once, whatever the address (default: the cluster's CPUs,
            re-read as the sweep runs so that an autoscaled cluster is used as it grows).
        runtime_env: the job's Ray ``runtime_env`` (working_dir, py_modules, pip, env_vars ...). Joining
            a Ray connection this process already has, it applies per task, without local folders.
        max_retries: times Ray re-runs a task whose worker or node died (on the remaining nodes) before
            the sweep fails with a ``ClusterError``.
        handshake: check that every node runs the driver's qf, Python and plugin versions (clusters
            only; a local instance runs this very interpreter).
        **init_kwargs: extra ``ray.init`` arguments.

    Example:
        >>> with RayExecutor("local", num_cpus=1) as ex:  # doctest: +SKIP
        ...     ex.map(_demo_sum_rows, [(0, 1)], shared={"a": np.ones((1, 3))})
        [3.0]
    """

    def __init__(self, address: str | None = "local", *, num_cpus: int | None = None, n_jobs: int | None = None,
                 runtime_env: dict[str, Any] | None = None, max_retries: int = 3, handshake: bool = True,
                 **init_kwargs: Any):
        from qf.research import ray_cluster  # cycle: qf.research.ray_cluster

        # no usage-stats phone-home from a research run
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        ray = _import_ray()
        self._ray = ray
        self._owns = False
        self._reaper: _Reaper | None = None
        self._n_jobs = n_jobs
        self._task_env: dict[str, Any] | None = None
        # clean-ups of resources the tasks need until the end (a runtime_env's working directory)
        self.on_close: list[Callable[[], None]] = []
        local = address in (None, "local")
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {
                "include_dashboard": False,
                "log_to_driver": False,
                "configure_logging": False,
            }
            if runtime_env:
                kwargs["runtime_env"] = runtime_env
            kwargs.update(init_kwargs)
            if local:
                # started first, so that it also covers a driver killed while Ray starts
                self._reaper = _Reaper()
                try:
                    with _loopback_only():
                        ray.init(address="local", num_cpus=num_cpus or n_jobs, **kwargs)
                except BaseException:
                    self._reaper.stand_down()
                    raise
            else:
                try:
                    ray.init(address=address, **kwargs)
                except Exception as exc:  # Ray raises ConnectionError, RuntimeError, its own errors ...
                    if ray.is_initialized():
                        ray.shutdown()
                    raise ray_cluster.connect_error(str(address), exc) from None
            self._owns = True
        else:
            # a job we did not start: its runtime_env applies per task, where Ray takes no local folders
            # (the job's own working_dir / py_modules stay in force)
            task_env = {k: v for k, v in (runtime_env or {}).items()
                        if k not in ("working_dir", "py_modules") or "://" in str(v)}
            self._task_env = task_env or None
        self._max_retries = max_retries
        self._refs: dict[int, tuple[Any, Any]] = {}
        self._remote = ray.remote(_run_ray_task)
        self._resized = 0.0
        self._n_workers = 1
        self._gone = False  # the cluster's GCS stopped answering: nothing left to shut down politely
        gcs = None
        if self._owns and not local and not str(address).startswith("ray://"):
            with contextlib.suppress(Exception):  # only a probe: without it, Ray's own timeout applies
                gcs = str(ray.get_runtime_context().gcs_address)
        self._watch = _GcsWatch(gcs)
        if handshake and not local:
            try:
                ray_cluster.handshake(ray)
            except BaseException:
                self.close()
                raise

    @property
    def n_workers(self) -> int:
        """Tasks run at once: the cluster's CPUs now (capped by ``n_jobs``), re-read at most every 2 s."""
        now = time.monotonic()
        # asking a dead GCS for the cluster's size would block until Ray gives up on it (60 s)
        if now - self._resized > RESIZE_SECONDS and not self._watch.down():
            cpus = max(1, int(self._ray.cluster_resources().get("CPU", 1)))
            self._n_workers = min(cpus, self._n_jobs) if self._n_jobs else cpus
            self._resized = now
        return self._n_workers

    def _put(self, value: Any) -> Any:
        entry = self._refs.get(id(value))
        if entry is not None and entry[0] is value:
            return entry[1]
        ref = self._ray.put(np.ascontiguousarray(value) if _is_array(value) else value)
        self._refs[id(value)] = (value, ref)
        return ref

    def imap(
        self,
        func: Callable[..., R],
        chunks: Iterable[Any],
        shared: Mapping[str, Any] | None = None,
    ) -> Iterator[tuple[int, R]]:
        """Yield ``(index, func(chunk, **shared))`` as tasks finish.

        Tasks are streamed: a few more than there are workers are in flight, and each finished task lets
        the next chunk go out (``ray.wait``), so a slow chunk never holds up the others.
        """
        from qf.research import ray_cluster  # cycle: qf.research.ray_cluster
        from qf.research.ray_cluster import task_error  # cycle: qf.research.ray_cluster

        ray = self._ray
        values = _check_shared(shared)
        names = list(values)
        refs = [self._put(values[name]) for name in names]
        options: dict[str, Any] = {"max_retries": self._max_retries}
        if self._task_env:
            options["runtime_env"] = self._task_env
        remote = self._remote.options(**options)
        todo = iter(enumerate(chunks))
        pending: dict[Any, int] = {}
        try:
            while True:
                # one queued task per worker beyond the running one keeps every worker busy
                while len(pending) < 2 * self.n_workers:
                    item = next(todo, None)
                    if item is None:
                        break
                    pending[remote.remote(func, item[1], names, *refs)] = item[0]
                if not pending:
                    return
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
                if not ready and self._watch.lost():
                    self._gone = True
                    raise ray_cluster.ClusterError(
                        f"the Ray cluster failed under the sweep: its head ({self._watch.address}) has not "
                        f"answered for {GCS_LOST_SECONDS:.0f} s (stopped, or its machine is gone)")
                for ref in ready:
                    index = pending.pop(ref)
                    try:
                        result = ray.get(ref)
                    except Exception as exc:
                        raise task_error(ray, exc) from None
                    yield index, result
        finally:
            for ref in pending:  # stopped early (an error, a closed generator): drop the rest
                with contextlib.suppress(Exception):
                    ray.cancel(ref)

    def release(self, value: Any) -> None:
        """Drop this executor's reference to ``value``'s shared object (Ray frees it once no task needs it)."""
        self._refs.pop(id(value), None)

    def close(self) -> None:
        """Drop the shared objects and shut Ray down if this executor started it."""
        self._refs.clear()
        if self._owns and self._ray.is_initialized():
            if self._gone:
                _abandon(self._ray)
            else:
                self._ray.shutdown()
        self._owns = False
        if self._reaper is not None:
            self._reaper.stand_down()
            self._reaper = None
        while self.on_close:
            self.on_close.pop()()

    def __enter__(self) -> RayExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
