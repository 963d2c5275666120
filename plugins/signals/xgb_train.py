"""``xgboost.train`` for the xgboost models, with every boosting round in one native call.

``xgboost.train(params, dtrain, n)`` runs a Python loop of ``n`` rounds, and every round makes several
ctypes calls (the round itself, and feature-name checks and an empty evaluation around it). Each call
releases the GIL and takes it back. When a walk-forward fits several folds on threads while other threads
run pandas code (building features, scoring, importing the engine), taking the GIL back after a call can
wait a switch interval plus a scheduler wake-up: measured on 2 busy cores, one fold's fit took 6.5 s of
wall time for 1.2 s of CPU next to one busy Python thread. :func:`train` makes the same C calls in the same
order as ``xgboost.train`` without evaluation sets, callbacks or custom objective (Booster created with the
training matrix in its cache, feature names and types copied from it as ``Booster.update`` does, one
``XGBoosterUpdateOneIter`` per round, ``Booster.reset`` at the end), so the model is the same byte for byte
(tests/plugins/signals/ml/test_xgb_train.py), but the rounds run in a loop of native code: a tiny function
compiled once per process with llvmlite (numba's code generator, installed with numba; ~15 ms), called
through ctypes, so the GIL is released once per fit. Without llvmlite the rounds run in a Python loop of
one ctypes call each.

Example::

    dtrain = xgboost.DMatrix(X, label=y, nthread=1)
    booster = train({"tree_method": "hist", "nthread": 1, "seed": 0}, dtrain, 150)
"""

from __future__ import annotations

import ctypes
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import xgboost as xgb

__all__ = ["train"]

# int rounds(int (*update)(void *booster, int iter, void *dtrain), void *booster, void *dtrain, int start,
#            int stop): XGBoosterUpdateOneIter for iter in [start, stop), stopping at the first non-zero
# return code (xgboost's error, whose message the calling thread reads with XGBGetLastError), which it returns
_Rounds = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_int)
_lock = threading.Lock()
_native: list[Any] = []  # [] until built: [(engine, function)] or [None] when llvmlite is unavailable


def _build_rounds() -> Any:
    """The native round loop as a ctypes function, or None when it cannot be built here."""
    try:
        import llvmlite.binding as llvm  # lazy: only a fit needs it (numba's code generator)
        from llvmlite import ir
    except ImportError:
        return None
    i8p, i32 = ir.IntType(8).as_pointer(), ir.IntType(32)
    update_ty = ir.FunctionType(i32, [i8p, i32, i8p])
    module = ir.Module(name="qf_xgb_rounds")
    fn = ir.Function(module, ir.FunctionType(i32, [update_ty.as_pointer(), i8p, i8p, i32, i32]), name="rounds")
    update, booster, dtrain, start, stop = fn.args
    entry, head, body, step, done, failed = (fn.append_basic_block(n)
                                             for n in ("entry", "head", "body", "step", "done", "failed"))
    b = ir.IRBuilder(entry)
    b.branch(head)
    b.position_at_end(head)  # for (i = start; i < stop; i++)
    i = b.phi(i32)
    i.add_incoming(start, entry)
    b.cbranch(b.icmp_signed("<", i, stop), body, done)
    b.position_at_end(body)  # rc = update(booster, i, dtrain); if (rc != 0) return rc
    rc = b.call(update, [booster, i, dtrain])
    b.cbranch(b.icmp_signed("!=", rc, ir.Constant(i32, 0)), failed, step)
    b.position_at_end(step)
    i.add_incoming(b.add(i, ir.Constant(i32, 1)), step)
    b.branch(head)
    b.position_at_end(done)
    b.ret(ir.Constant(i32, 0))
    b.position_at_end(failed)
    b.ret(rc)
    try:
        llvm.initialize_native_target()
        llvm.initialize_native_asmprinter()
        target = llvm.Target.from_default_triple().create_target_machine()
        parsed = llvm.parse_assembly(str(module))
        parsed.verify()
        engine = llvm.create_mcjit_compiler(parsed, target)
        engine.finalize_object()
        address = engine.get_function_address("rounds")
    except Exception:  # noqa: BLE001 - no JIT on this platform: the Python loop is the same model, only slower
        return None
    if not address:
        return None
    return engine, _Rounds(address)  # the engine owns the code: kept alive with the function


def _rounds_function() -> Any:
    with _lock:  # folds fit on several threads: build once
        if not _native:
            _native.append(_build_rounds())
    return _native[0][1] if _native[0] is not None else None


def train(params: dict[str, Any], dtrain: xgb.DMatrix, num_boost_round: int) -> xgb.Booster:
    """``xgboost.train(params, dtrain, num_boost_round)`` (no evaluation sets, callbacks or custom objective):
    the same model byte for byte, its rounds run without taking the GIL back between rounds.

    Example::

        booster = train(params, xgboost.DMatrix(X, label=y), 150)
        booster.save_model("model.json")    # identical to xgboost.train(params, dtrain, 150)'s file
    """
    import xgboost  # lazy: xgboost (imported on first fit, see qf_plugins.signals.xgb._xgb)
    from xgboost.core import _LIB, _check_call

    booster = xgboost.Booster(params, [dtrain])
    if dtrain.num_row():  # what Booster.update does before the first round (names and types go in the model)
        booster.feature_names = dtrain.feature_names
        booster.feature_types = dtrain.feature_types
    rounds = _rounds_function()
    if rounds is not None:
        update = ctypes.cast(_LIB.XGBoosterUpdateOneIter, ctypes.c_void_p)
        _check_call(rounds(update, booster.handle, dtrain.handle, 0, int(num_boost_round)))
    else:
        for i in range(int(num_boost_round)):
            _check_call(_LIB.XGBoosterUpdateOneIter(booster.handle, ctypes.c_int(i), dtrain.handle))
    return booster.reset()
