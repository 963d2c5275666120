"""Local process-pool and Ray executors: same results as in-process, arrays shared once, read-only."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from qf.bars import Bars
from qf.config.loader import LoadedExperiment, load_experiment
from qf.research.executors import Executor, LocalExecutor
from qf.research.sweep import evaluate_grid, grid_of
from qf.testing import sample_bars, write_csv_experiment

# the workload: a YAML sweep (sma_cross x equal, 36 combinations) on 5 synthetic symbols x 600 bars
SWEEP = {
    "name": "executors",
    "data": {"type": "csv", "params": {"path": "prices.csv"}},
    "signal": {"type": "sma_cross", "params": {"fast": 5, "slow": 20}},
    "sizer": {"type": "equal"},
    "execution": {"fees": 0.001, "slippage": 0.0005, "initial_cash": 10_000.0},
    "sweep": {"params": {"signal.params.fast": [5, 8, 10, 15, 20, 30],
                         "signal.params.slow": [35, 40, 45, 60, 90, 120]}},
}


def _describe(chunk: int, data: np.ndarray) -> tuple[int, float, bool, int]:
    """Worker function: proves the chunk order, the shared data and its read-only flag."""
    return chunk, float(data[chunk].sum()), bool(data.flags.writeable), os.getpid()


def _try_write(chunk: int, data: np.ndarray) -> None:
    data[0, 0] = -1.0


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> tuple[LoadedExperiment, Bars, pd.DataFrame]:
    folder: Path = tmp_path_factory.mktemp("sweep")
    exp = load_experiment(write_csv_experiment(folder, sample_bars(n_symbols=5, n_bars=600, seed=4), SWEEP))
    return exp, exp.data.load(), grid_of(exp)


@pytest.fixture(scope="module")
def in_process(sweep: tuple[LoadedExperiment, Bars, pd.DataFrame]) -> pd.DataFrame:
    # Runs first in the module: it also compiles the kernels into numba's disk cache for the workers.
    with LocalExecutor(n_jobs=1) as ex:
        return evaluate_grid(*sweep, executor=ex)


@pytest.fixture(scope="module")
def shared_dir(tmp_path_factory: pytest.TempPathFactory):
    return tmp_path_factory.mktemp("shared")


@pytest.fixture(scope="module")
def local_executor(in_process: pd.DataFrame, shared_dir):
    # One pool for the module: starting worker processes is the slow part of these tests.
    with LocalExecutor(n_jobs=2, tmp_dir=str(shared_dir)) as ex:
        yield ex
    assert not any(files for _, _, files in os.walk(shared_dir))  # shared files removed on close


@pytest.fixture(scope="module")
def local_table(sweep: tuple[LoadedExperiment, Bars, pd.DataFrame], local_executor: LocalExecutor) -> pd.DataFrame:
    return evaluate_grid(*sweep, executor=local_executor)


def test_local_executor_map_semantics(local_executor: LocalExecutor, shared_dir) -> None:
    ex = local_executor
    data = np.arange(40.0).reshape(10, 4)
    before = {f for _, _, files in os.walk(shared_dir) for f in files}
    assert isinstance(ex, Executor)
    out = ex.map(_describe, range(10), shared={"data": data})
    assert [o[0] for o in out] == list(range(10))  # chunk order kept
    assert [o[1] for o in out] == data.sum(axis=1).tolist()
    assert not any(o[2] for o in out)  # read-only in the workers
    assert {o[3] for o in out} - {os.getpid()}  # really ran in other processes
    ex.map(_describe, range(3), shared={"data": data})
    # the array went to disk once, however many chunks and maps used it
    after = {f for _, _, files in os.walk(shared_dir) for f in files}
    assert len(after - before) == 1
    with pytest.raises(ValueError, match="read-only"):
        ex.map(_try_write, [0], shared={"data": data})
    assert data[0, 0] == 0.0


def test_local_executor_matches_in_process(in_process: pd.DataFrame, local_table: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(local_table, in_process)
    assert len(in_process) == 36 and in_process["n_orders"].min() > 0  # every combination traded


def test_local_executor_in_process_mode_is_read_only_too() -> None:
    data = np.ones((2, 2))
    with LocalExecutor(n_jobs=1) as ex:
        assert ex.map(_describe, [1], shared={"data": data})[0][:3] == (1, 2.0, False)
        with pytest.raises(ValueError, match="read-only"):
            ex.map(_try_write, [0], shared={"data": data})
    assert data.flags.writeable


def _first_key(chunk: int, table: dict[str, list[int]]) -> tuple[int, int, int]:
    return chunk, table["k"][chunk], id(table)


def test_local_executor_ships_other_objects_once(shared_dir) -> None:
    """A non-array shared value (a Bars, a dict) is pickled once to a file, not into every chunk."""
    table = {"k": list(range(100))}
    with LocalExecutor(n_jobs=2, tmp_dir=str(shared_dir)) as ex:
        got = dict(ex.imap(_first_key, range(8), shared={"table": table}))
        files = [f for _, _, fs in os.walk(shared_dir) for f in fs]
        assert [f for f in files if f.endswith(".pkl")] == ["o0.pkl"]
        ex.map(_first_key, range(3), shared={"table": table})  # same object: not written again
        assert len([f for _, _, fs in os.walk(shared_dir) for f in fs]) == len(files)
    assert sorted(got) == list(range(8)) and [got[i][1] for i in range(8)] == list(range(8))
    # each worker process loaded it once: every chunk a worker ran saw the same object
    assert len({v[2] for v in got.values()}) <= 2


def test_released_values_are_deleted_and_their_names_never_reused(tmp_path) -> None:
    """An executor serving many sweeps (walk-forward folds) drops each one's data; a worker that cached a
    released value by its file name must never be handed a different value under that name."""
    first, second = {"k": [1] * 8}, {"k": [2] * 8}
    with LocalExecutor(n_jobs=2, tmp_dir=str(tmp_path)) as ex:
        assert {r[1] for r in ex.map(_first_key, range(4), shared={"table": first})} == {1}
        ex.release(first)
        assert [f for _, _, fs in os.walk(tmp_path) for f in fs] == []
        assert {r[1] for r in ex.map(_first_key, range(4), shared={"table": second})} == {2}
        assert [f for _, _, fs in os.walk(tmp_path) for f in fs] == ["o1.pkl"]
        assert ex.started


def test_shared_array_validation() -> None:
    with LocalExecutor(n_jobs=1) as ex:
        with pytest.raises(ValueError, match="identifier"):
            ex.map(_describe, [0], shared={"not valid": np.ones(1)})
        with pytest.raises(TypeError, match="numeric numpy array"):
            ex.map(_describe, [0], shared={"data": np.array([1, "a"], dtype=object)})
    with pytest.raises(ValueError, match="n_jobs"):
        LocalExecutor(n_jobs=0)


def test_ray_executor_gives_the_same_table(sweep: tuple[LoadedExperiment, Bars, pd.DataFrame],
                                          local_table: pd.DataFrame) -> None:
    ray = pytest.importorskip("ray")
    import sys

    from qf.research.executors import RayExecutor

    # Ray workers do not have pytest's rootdir on sys.path: ship this module's helpers by value.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    with RayExecutor("local", num_cpus=2) as ex:
        assert ex.n_workers == 2
        # a private instance: every Ray node listens on the loopback address only
        assert {node["NodeManagerAddress"] for node in ray.nodes()} == {"127.0.0.1"}
        table = evaluate_grid(*sweep, executor=ex)
        data = np.arange(12.0).reshape(3, 4)
        out = ex.map(_describe, [2, 0, 1], shared={"data": data})
        assert [o[:3] for o in out] == [(2, 38.0, False), (0, 6.0, False), (1, 22.0, False)]
    pd.testing.assert_frame_equal(table, local_table)
