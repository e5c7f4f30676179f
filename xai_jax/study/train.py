"""Training: TrainState, a pure jitted train step, evaluation, fit with orbax checkpoints.

Determinism: every random draw derives from one seed. The batch of step s is slice s of a
per-epoch permutation drawn from fold_in(data_key, epoch), and step s's augmentation and
dropout keys are fold_in(aug_key, s), so a run resumed from a checkpoint at step s takes
exactly the batches and keys the uninterrupted run would have taken.

Speed: steps run as jitted calls over device-resident data; the host syncs with the device
once per `cfg.chunk` steps (progress bar, loss check) and at checkpoints.

Bad input fails early with a ValueError/TypeError naming the argument, what it got and what
was expected: TrainConfig checks itself; fit, evaluate and predict_logits check the model (a
flax Module), the input shape, the params against the model (jax.eval_shape, nothing computed),
reject empty or non-finite inputs and out-of-range labels; fit checks num_classes against the
model's output size and ckpt_dir before training. evaluate rejects NaN/inf logits. A loss or
parameters that turn non-finite during training stop fit with NonFiniteLossError naming the
step; save_checkpoint refuses a non-finite state, so one is never checkpointed.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import numbers
import os
import socket
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax.training import train_state
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
from tqdm.auto import tqdm

from xai_jax.batching import run_in_batches
from xai_jax.checks import check_int, check_mesh, check_optional_int
from xai_jax.distributed import gather_process_shards, spans_processes
from xai_jax.study.models.validate import (
    check_input_shape,
    check_model,
    check_num_classes,
    check_params,
    output_classes,
)

Augment = Callable[[jax.Array, jax.Array], jax.Array]  # (key, x batch) -> x batch


class TrainState(train_state.TrainState):
    """flax TrainState (step, apply_fn, params, tx, opt_state)."""


class NonFiniteLossError(ValueError):
    """Training diverged: the loss (or the parameters) became NaN or inf at a named step;
    also raised by save_checkpoint for a non-finite state."""


class RunMismatchError(ValueError):
    """fit was asked to resume checkpoints of another run: ckpt_dir's run record (config, model,
    data) differs from this call's in the fields the message names."""


class CheckpointLockedError(RuntimeError):
    """Another fit (the process the message names) is training into the same ckpt_dir."""


def _check_float(name: str, value, ok: Callable[[float], bool], expected: str) -> None:
    """TypeError unless value is a real number (not a bool); ValueError unless finite and ok(value)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be {expected}, got {type(value).__name__} {value!r}")
    if not (math.isfinite(value) and ok(value)):
        raise ValueError(f"{name} must be {expected}, got {value!r}")


@dataclass(frozen=True)
class TrainConfig:
    """Training hyper-parameters; checked on construction (ValueError/TypeError naming the field)."""

    steps: int = 6000
    batch_size: int = 128
    learning_rate: float = 3e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 200
    label_smoothing: float = 0.0
    seed: int = 0
    chunk: int = 200  # steps per host sync (progress bar and loss check)

    def __post_init__(self):
        for name, minimum in (("steps", 1), ("batch_size", 1), ("chunk", 1), ("warmup_steps", 0), ("seed", 0)):
            check_int(getattr(self, name), f"TrainConfig.{name}", minimum)
        _check_float("TrainConfig.learning_rate", self.learning_rate, lambda v: v > 0, "a finite float > 0")
        _check_float("TrainConfig.weight_decay", self.weight_decay, lambda v: v >= 0, "a finite float >= 0")
        _check_float("TrainConfig.label_smoothing", self.label_smoothing, lambda v: 0 <= v < 1,
                     "a float in [0, 1)")


def _as_array(x: Any, name: str) -> Any:
    """x as an array of a float or integer dtype; TypeError naming `name` for anything else
    (None, strings, ragged or non-numeric lists, bool or object arrays)."""
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        if isinstance(x, (list, tuple)):
            try:
                x = np.asarray(x)
            except (ValueError, TypeError) as e:
                raise TypeError(f"{name} must be an array (N, ...) of floats, got a ragged {type(x).__name__}") from e
        else:
            raise TypeError(f"{name} must be an array, got {type(x).__name__}")
    if x.dtype == np.bool_ or not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise TypeError(f"{name} must have a float dtype, got {x.dtype}")
    return x


def check_inputs(x, input_shape: tuple[int, ...], name: str = "x") -> np.ndarray:
    """Validates a batch (N, *input_shape) of float inputs; returns it as float32 NumPy."""
    x = _as_array(x, name)
    if tuple(x.shape[1:]) != tuple(input_shape) or x.ndim != len(input_shape) + 1:
        raise ValueError(
            f"{name} must have shape (N, {', '.join(map(str, input_shape))}), got {tuple(x.shape)}"
        )
    return np.asarray(x, np.float32)


def _indices(idx: np.ndarray, k: int = 5) -> str:
    """The first k indices of idx as '[i, j, ...]'."""
    return "[" + ", ".join(map(str, idx[:k].tolist())) + (", ..." if len(idx) > k else "") + "]"


def _check_nonempty_finite(x: np.ndarray, name: str, caller: str) -> None:
    """ValueError if x (N, ...) holds no input, or any NaN/inf (naming the first bad inputs)."""
    if x.shape[0] == 0:
        raise ValueError(f"{caller} needs at least one input, got {name} of shape {tuple(x.shape)}")
    bad = np.flatnonzero(~np.isfinite(x.reshape(x.shape[0], -1)).all(1))
    if bad.size:
        raise ValueError(f"{name} must be finite: {bad.size} of {x.shape[0]} inputs hold NaN or inf, "
                         f"first at indices {_indices(bad)}")


def _check_labels(y, n: int, num_classes: int, name: str) -> np.ndarray:
    """y as integer labels (n,) in [0, num_classes); ValueError naming the first bad inputs."""
    y = np.asarray(y)
    if y.shape != (n,) or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"{name} must be integer labels of shape ({n},), got {y.dtype} {y.shape}")
    bad = np.flatnonzero((y < 0) | (y >= num_classes))
    if bad.size:
        raise ValueError(f"{name} labels must lie in [0, {num_classes}), got {y[bad[0]]} at input {bad[0]} "
                         f"({bad.size} bad, first at indices {_indices(bad)}; labels span [{y.min()}, {y.max()}])")
    return y


@jax.jit
def _all_finite(tree) -> jax.Array:
    """True iff every leaf of the pytree is finite (one reduction on device)."""
    leaves = [jnp.isfinite(leaf).all() for leaf in jax.tree.leaves(tree)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.asarray(True)


def _tree_finite(tree) -> bool:
    """True iff every array leaf of the pytree is finite."""
    return bool(_all_finite(tree))


def _nonfinite_paths(tree, k: int = 3) -> str:
    """The paths of the first k leaves holding NaN or inf, e.g. "['params']['dense']['bias']"."""
    bad = [jax.tree_util.keystr(p) for p, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]
           if not bool(jnp.isfinite(leaf).all())]
    return ", ".join(bad[:k]) + (", ..." if len(bad) > k else "")


def make_optimizer(cfg: TrainConfig) -> optax.GradientTransformation:
    """AdamW with linear warm-up and cosine decay to zero."""
    schedule = optax.warmup_cosine_decay_schedule(
        0.0, cfg.learning_rate, min(cfg.warmup_steps, max(cfg.steps - 1, 1)), max(cfg.steps, 2)
    )
    return optax.adamw(schedule, weight_decay=cfg.weight_decay)


def _check_cfg(cfg: Any) -> TrainConfig:
    if not isinstance(cfg, TrainConfig):
        raise TypeError(f"cfg must be a TrainConfig, got {type(cfg).__name__}")
    return cfg


def _refuse_extra_collections(model: nn.Module, input_shape: tuple[int, ...]) -> None:
    """fit trains models whose only variables are params (the study's models). A model with
    other collections (BatchNorm's batch_stats, ...) needs them updated in its training loop,
    which fit does not do: refused with a clear error rather than trained wrong."""
    try:
        shapes = jax.eval_shape(model.init, jax.random.key(0), jax.ShapeDtypeStruct((1, *input_shape), jnp.float32))
    except Exception:
        return  # output_classes reports why the model cannot take such inputs
    extra = sorted(c for c in shapes if c != "params")
    if extra:
        raise ValueError(
            f"fit trains models whose only variables are params; {type(model).__name__} also has the collections "
            f"{extra} (e.g. BatchNorm's batch_stats), which fit does not update. Train it with a loop of your own "
            f"(model.apply(..., mutable={extra!r})), then explain it with xai_jax.Model(model, variables)")


def create_state(
    model: nn.Module, input_shape: tuple[int, ...], cfg: TrainConfig
) -> TrainState:
    """A fresh TrainState: model's parameters initialised (key cfg.seed) for inputs of
    input_shape (one unbatched input) and the optimiser of make_optimizer(cfg)."""
    check_model(model)
    input_shape = check_input_shape(input_shape)
    _check_cfg(cfg)
    _refuse_extra_collections(model, input_shape)
    output_classes(model, input_shape)  # a clear error if the model cannot take such inputs
    params = model.init(jax.random.key(cfg.seed), jnp.zeros((1, *input_shape), jnp.float32))
    return TrainState.create(apply_fn=model.apply, params=params["params"], tx=make_optimizer(cfg))


def loss_fn(params, apply_fn, x, y, num_classes: int, label_smoothing: float):
    logits = apply_fn({"params": params}, x)
    labels = optax.smooth_labels(jax.nn.one_hot(y, num_classes), label_smoothing)
    loss = optax.softmax_cross_entropy(logits, labels).mean()
    return loss, (logits.argmax(-1) == y).mean()


def train_step(state: TrainState, x: jax.Array, y: jax.Array, *, num_classes: int,
               label_smoothing: float = 0.0) -> tuple[TrainState, dict]:
    """One optimisation step on a batch; pure, so it jits, scans and shards."""
    (loss, acc), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state.params, state.apply_fn, x, y, num_classes, label_smoothing
    )
    return state.apply_gradients(grads=grads), {"loss": loss, "accuracy": acc}


def epoch_permutation(data_key: jax.Array, epoch: int, n: int) -> jax.Array:
    """The order in which epoch `epoch` visits the n training inputs."""
    return jax.random.permutation(jax.random.fold_in(data_key, epoch), n)


def make_step(cfg: TrainConfig, num_classes: int, augment: Augment | None, mesh=None):
    """A jitted step (state, x_all, y_all, perm, pos, aug_key) -> (state, metrics).

    The batch is perm[pos * batch_size:(pos + 1) * batch_size], gathered on device.
    (A Python loop of jitted steps: on XLA:CPU a lax.scan over conv steps ran 8x slower.)
    With a mesh, data-parallel over its "data" axis: the batch is constrained to be sharded
    along it, state and metrics replicated; XLA inserts the gradient all-reduce. The batch
    size must then be a multiple of the device count.
    """
    constrain = lambda v: v  # noqa: E731
    out_shardings = None
    if mesh is not None:
        devices = mesh.devices.size
        if cfg.batch_size % devices:
            raise ValueError(f"cfg.batch_size {cfg.batch_size} must be a multiple of the {devices} devices")
        batch_sharding = NamedSharding(mesh, P("data"))
        replicated = NamedSharding(mesh, P())
        constrain = lambda v: jax.lax.with_sharding_constraint(v, batch_sharding)  # noqa: E731
        out_shardings = (replicated, replicated)

    def step(state, x_all, y_all, perm, pos, aug_key):
        idx = jax.lax.dynamic_slice_in_dim(perm, pos * cfg.batch_size, cfg.batch_size)
        x, y = constrain(x_all[idx]), constrain(y_all[idx])
        if augment is not None:
            x = augment(jax.random.fold_in(aug_key, state.step), x)
        return train_step(state, x, y, num_classes=num_classes, label_smoothing=cfg.label_smoothing)

    return jax.jit(step) if out_shardings is None else jax.jit(step, out_shardings=out_shardings)


def predict_logits(model: nn.Module, params, x, batch_size: int = 500) -> np.ndarray:
    """Logits for a batch x (N, ...) of finite inputs in fixed-size jitted batches (the last
    one padded).

    N = 0 returns an empty (0, num_classes) array (num_classes from the model's output shape).
    TypeError for a model that is not a flax Module, params that are not a dict, or x that is not
    a numeric array (strings, ragged lists); ValueError when params do not fit the model for x's
    input shape (naming the first mismatching leaf and its expected shape) or x holds NaN/inf.
    """
    check_model(model)
    batch_size = check_int(batch_size, "batch_size", 1)
    x = np.asarray(_as_array(x, "x"), np.float32)
    if x.ndim < 2:
        raise ValueError(f"x must be a batch (N, ...) of inputs, got shape {x.shape}")
    num_classes = check_params(model, params, x.shape[1:], "x")
    if len(x) == 0:
        return np.zeros((0, num_classes), np.float32)
    _check_nonempty_finite(x, "x", "predict_logits")
    return _logits(model, params, x, batch_size)


def _logits(model: nn.Module, params, x: np.ndarray, batch_size: int = 500) -> np.ndarray:
    """predict_logits without the checks (x: checked, N >= 1)."""
    return run_in_batches(lambda xb: _jitted_apply(model)(params, xb), (x,), min(batch_size, len(x)))


@functools.lru_cache(maxsize=16)
def _cached_jit(model: nn.Module):
    return jax.jit(lambda p, x: model.apply({"params": p}, x))


def _jitted_apply(model: nn.Module):
    """One jitted apply per model (linen modules hash by their fields), reused across calls;
    a fresh one for a module that does not hash (list fields)."""
    try:
        return _cached_jit(model)
    except TypeError:
        return jax.jit(lambda p, x: model.apply({"params": p}, x))


def evaluate(model: nn.Module, params, x, y, input_shape: tuple[int, ...]) -> dict:
    """Accuracy and mean cross-entropy on (x, y); x: (N, *input_shape), N >= 1 and finite;
    y: integer labels in [0, num_classes); params: the model's parameters for input_shape.
    ValueError/TypeError otherwise (naming model, input_shape, params, x or y), and ValueError
    naming the inputs whose logits are NaN or inf (e.g. non-finite params)."""
    check_model(model)
    input_shape = check_input_shape(input_shape)
    x = check_inputs(x, input_shape)
    _check_nonempty_finite(x, "x", "evaluate")
    num_classes = check_params(model, params, input_shape, "x")
    y = _check_labels(y, x.shape[0], num_classes, "y")
    logits = _logits(model, params, x)
    bad = np.flatnonzero(~np.isfinite(logits).all(1))
    if bad.size:
        why = "params hold NaN or inf values" if not _tree_finite(params) else "the model overflowed"
        raise ValueError(f"the model returned NaN or inf logits for inputs {_indices(bad)} ({bad.size} of "
                         f"{x.shape[0]}; {why}); accuracy and loss are undefined")
    logp = jax.nn.log_softmax(logits)
    return {
        "accuracy": float((logits.argmax(-1) == y).mean()),
        "loss": float(-np.take_along_axis(np.asarray(logp), y[:, None], 1).mean()),
    }


# ----------------------------------------------------------------------------- checkpoints


def _check_ckpt_dir(ckpt_dir: Any) -> Path:
    """ckpt_dir as a Path: a str/PathLike (TypeError otherwise) that is not a file (ValueError)."""
    if not isinstance(ckpt_dir, (str, os.PathLike)):
        raise TypeError(f"ckpt_dir must be a path (str or os.PathLike), got {type(ckpt_dir).__name__} "
                        f"{ckpt_dir!r:.80}")
    path = Path(ckpt_dir)
    if path.exists() and not path.is_dir():
        raise ValueError(f"ckpt_dir {str(path)!r} is a file, not a directory of checkpoints")
    return path


def _check_creatable(path: Path) -> None:
    """ValueError unless `path` is, or can be made as, a writable directory (nothing is created)."""
    existing = path.resolve()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise ValueError(f"ckpt_dir {str(path)!r} cannot be created: {str(existing)!r} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"ckpt_dir {str(path)!r} cannot be {'written' if existing == path.resolve() else 'created'}: "
                         f"{str(existing)!r} is not writable")


def _check_state(state: Any) -> TrainState:
    if not isinstance(state, train_state.TrainState):
        raise TypeError(f"state must be a TrainState (from create_state), got {type(state).__name__}")
    return state


def _manager(ckpt_dir: str | os.PathLike, max_to_keep: int = 2):
    import orbax.checkpoint as ocp

    path = Path(ckpt_dir).resolve()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ValueError(f"ckpt_dir {str(path)!r} cannot be created: {e}") from e
    return ocp.CheckpointManager(path, item_handlers=ocp.StandardCheckpointHandler(),
                                 options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep))


def save_checkpoint(ckpt_dir: str | os.PathLike, state: TrainState, *, replace_newer: bool = False) -> None:
    """Saves the state's params, optimiser state and step under ckpt_dir/<step>.

    The step must be newer than every checkpoint in ckpt_dir (ValueError otherwise: orbax
    would skip the save silently), unless replace_newer=True, which first deletes those.
    A state whose params or optimiser state hold NaN or inf is never saved: NonFiniteLossError
    (a ValueError) naming the state and the leaves, raised before anything is written.
    TypeError unless ckpt_dir is a path and state a TrainState.
    """
    import orbax.checkpoint as ocp

    path = _check_ckpt_dir(ckpt_dir)
    _check_state(state)
    savable = _savable(state)
    if not _tree_finite(savable):
        raise NonFiniteLossError(f"state (step {int(state.step)}) holds NaN or inf values in "
                                 f"{_nonfinite_paths(savable)}; a non-finite state is never checkpointed")
    step = int(state.step)
    with _manager(path) as mngr:
        newer = [s for s in mngr.all_steps() if s >= step]
        if newer and not replace_newer:
            raise ValueError(f"ckpt_dir {str(ckpt_dir)!r} already holds checkpoint step(s) {sorted(newer)} >= "
                             f"the step {step} being saved; pass replace_newer=True to replace them")
        for s in newer:
            mngr.delete(s)
        if not mngr.save(step, args=ocp.args.StandardSave(savable)):
            raise ValueError(f"orbax declined to save step {step} in ckpt_dir {str(ckpt_dir)!r}")
        mngr.wait_until_finished()


def _savable(state: TrainState) -> dict:
    return {"step": state.step, "params": state.params, "opt_state": state.opt_state}


def restore_checkpoint(ckpt_dir: str | os.PathLike, state: TrainState, step: int | None = None) -> TrainState:
    """Restores into a template state (from create_state).

    step=None: the newest step that restores; a corrupt newer step is skipped with a warning
    naming it and the step used; else an int >= 0 (TypeError for 5.0 or "5"). ValueError if no
    step restores (corrupt, or another model), if an explicit `step` does not, or if ckpt_dir is
    a file; FileNotFoundError if ckpt_dir or the step is missing; TypeError unless state is a
    TrainState.
    """
    import orbax.checkpoint as ocp

    path = _check_ckpt_dir(ckpt_dir)
    _check_state(state)
    step = check_optional_int(step, "step", 0)
    if not path.is_dir():
        raise FileNotFoundError(f"ckpt_dir {str(path)!r} does not exist")
    with _manager(path) as mngr:
        available = sorted(mngr.all_steps(), reverse=True)
        if not available:
            raise FileNotFoundError(f"ckpt_dir {str(path)!r} holds no checkpoint")
        if step is not None and step not in available:
            raise FileNotFoundError(f"ckpt_dir {str(path)!r} holds no checkpoint step {step} "
                                    f"(steps: {sorted(available)})")
        target = jax.tree.map(ocp.utils.to_shape_dtype_struct, _savable(state))
        failed: list[tuple[int, Exception]] = []
        for s in [step] if step is not None else available:
            try:
                # shapes and dtypes first, from the checkpoint's metadata: a restore that fails
                # part-way leaves tensorstore reads calling back into the event loop orbax has
                # closed ("RuntimeError: Event loop is closed" tracebacks on stderr)
                _check_layout(mngr, s, target)
                restored = mngr.restore(s, args=ocp.args.StandardRestore(target))
                break
            except Exception as e:  # orbax/tensorstore raise many types for a damaged checkpoint
                failed.append((s, e))
        else:
            s, e = failed[0]
            older = f" (so do older steps {[f for f, _ in failed[1:]]})" if len(failed) > 1 else ""
            raise ValueError(
                f"checkpoint {s} in ckpt_dir {str(path)!r} is corrupt or does not match "
                f"the model{older}: {type(e).__name__}: {str(e)[:300]}"
            ) from e
    if failed:
        bad, many = ", ".join(str(f) for f, _ in failed), len(failed) > 1
        warnings.warn(f"checkpoint step{'s' * many} {bad} in ckpt_dir {str(path)!r} "
                      f"{'are' if many else 'is'} corrupt or {'do' if many else 'does'} not match the model "
                      f"({type(failed[0][1]).__name__}); restored the newest valid step {s} instead", stacklevel=2)
    return state.replace(step=restored["step"], params=restored["params"],
                         opt_state=restored["opt_state"])


def _path_names(path) -> str:
    """A tree path as "a/0/b" whatever the containers (orbax's metadata turns tuples into lists)."""
    parts = []
    for k in path:
        for attr in ("key", "idx", "name"):
            if hasattr(k, attr):
                parts.append(str(getattr(k, attr)))
                break
        else:
            parts.append(str(k))
    return "/".join(parts)


def _layout(tree) -> dict[str, tuple]:
    """{path: shape} of a tree's leaves (dtypes are not compared: a restore casts them)."""
    return {_path_names(p): tuple(getattr(leaf, "shape", np.shape(leaf)))
            for p, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _check_layout(mngr, step: int, target) -> None:
    """ValueError naming the first leaves whose shapes in checkpoint `step` differ from the
    template's, or that only one of them has (a checkpoint of another model), read from the
    checkpoint's metadata."""
    try:
        stored = _layout(mngr.item_metadata(step))
    except Exception:  # no readable metadata: the restore itself reports what is wrong
        return
    if not stored:
        return
    wanted = _layout(target)
    diff = [f"{k}: {stored.get(k, 'absent')} in the checkpoint, {wanted.get(k, 'absent')} for this model"
            for k in sorted(set(stored) | set(wanted), key=lambda k: (not k.startswith("params"), k))
            if stored.get(k) != wanted.get(k)]
    if diff:
        raise ValueError(f"the checkpoint holds another model's state: {'; '.join(diff[:3])}"
                         f"{f' (and {len(diff) - 3} more)' if len(diff) > 3 else ''}")


def latest_step(ckpt_dir: str | os.PathLike) -> int | None:
    """The newest checkpoint step in ckpt_dir; None if it is missing or holds none."""
    if not _check_ckpt_dir(ckpt_dir).is_dir():
        return None
    with _manager(ckpt_dir) as mngr:
        return mngr.latest_step()


# ----------------------------------------------------------------------------- run records and the lock

RUN_RECORD = "xai_jax_run.json"  # in ckpt_dir: what the checkpoints there were trained with
LOCK_FILE = "xai_jax_fit.lock"  # in ckpt_dir while a fit trains into it
ON_MISMATCH = ("raise", "restart", "resume")
HASH_WHOLE_BYTES = 64 << 20  # arrays up to this size are hashed whole; larger ones by a sample of rows
HASH_SAMPLE_ROWS = 1024


def array_digest(a) -> dict:
    """{"shape", "dtype", "digest"} of an array (N, ...): a BLAKE2b digest of its bytes, or, for
    arrays over HASH_WHOLE_BYTES, of HASH_SAMPLE_ROWS evenly spaced rows (plus the first and
    last), so that it stays cheap (about 1 s per GB hashed whole) for large image sets."""
    a = np.ascontiguousarray(np.asarray(a))
    h = hashlib.blake2b(digest_size=12)
    if a.nbytes <= HASH_WHOLE_BYTES or a.ndim == 0:
        h.update(a.tobytes())
        how = "whole"
    else:
        rows = np.unique(np.linspace(0, len(a) - 1, HASH_SAMPLE_ROWS).round().astype(np.int64))
        h.update(np.ascontiguousarray(a[rows]).tobytes())
        how = f"{len(rows)} rows"
    return {"shape": list(a.shape), "dtype": str(a.dtype), "digest": h.hexdigest(), "hashed": how}


def _model_record(model: nn.Module) -> dict:
    fields = {f.name: repr(getattr(model, f.name)) for f in dataclasses.fields(model)
              if f.name not in ("parent", "name")} if dataclasses.is_dataclass(model) else {}
    return {"class": f"{type(model).__module__}.{type(model).__qualname__}", **fields}


def run_record(model: nn.Module, x_train, y_train, cfg: TrainConfig, num_classes: int,
               input_shape: tuple[int, ...], augment: Augment | None) -> dict:
    """What fit stores beside its checkpoints and compares when it resumes: the TrainConfig
    (all fields but `chunk`, which only sets how often the host syncs), the model's class and
    fields, num_classes, input_shape, the augmentation's name, and the training data's shapes,
    dtypes and digests (array_digest)."""
    config = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg) if f.name != "chunk"}
    name = None if augment is None else (f"{getattr(augment, '__module__', '?')}."
                                         f"{getattr(augment, '__qualname__', type(augment).__name__)}")
    return {"config": config, "model": _model_record(model), "num_classes": int(num_classes),
            "input_shape": list(input_shape), "augment": name,
            "data": {"x_train": array_digest(x_train), "y_train": array_digest(np.asarray(y_train, np.int64))}}


def _differences(stored: dict, current: dict, prefix: str = "") -> list[str]:
    out = []
    for k in sorted(set(stored) | set(current)):
        a, b = stored.get(k, "absent"), current.get(k, "absent")
        name = f"{prefix}{k}"
        if isinstance(a, dict) and isinstance(b, dict):
            out.extend(_differences(a, b, name + "."))
        elif a != b and k != "hashed":
            out.append(f"{name}: {a!r:.60} there, {b!r:.60} here")
    return out


def _describe_differences(diff: list[str]) -> str:
    names = {"config.": "TrainConfig.", "data.x_train.digest": "x_train (its values)",
             "data.y_train.digest": "y_train (its values)"}
    lines = []
    for d in diff:
        for old, new in names.items():
            d = d.replace(old, new, 1) if d.startswith(old) else d
        lines.append(d)
    return "; ".join(lines)


def _read_record(path: Path) -> dict | None:
    try:
        return json.loads((path / RUN_RECORD).read_text())
    except (OSError, ValueError):
        return None


def _write_record(path: Path, record: dict) -> None:
    tmp = path / f".{RUN_RECORD}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(record, indent=1, sort_keys=True))
    os.replace(tmp, path / RUN_RECORD)  # atomic: a reader sees the old record or the new one


def _delete_checkpoints(path: Path) -> list[int]:
    with _manager(path) as mngr:
        steps = sorted(mngr.all_steps())
        for s in steps:
            mngr.delete(s)
    return steps


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


class _CkptLock:
    """ckpt_dir/LOCK_FILE, created with O_EXCL and holding {"pid", "host", "since"}. A lock left
    by a process that is gone (same host, pid not running: e.g. a killed fit) is stale: it is
    replaced, with a warning. Otherwise CheckpointLockedError names the holder."""

    def __init__(self, path: Path):
        self.file = path / LOCK_FILE
        self.held = False

    def holder(self) -> dict:
        try:
            return json.loads(self.file.read_text())
        except (OSError, ValueError):
            return {}

    def __enter__(self):
        self.file.parent.mkdir(parents=True, exist_ok=True)
        me = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}
        for _ in range(3):
            try:
                fd = os.open(self.file, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                other = self.holder()
                pid, host = other.get("pid"), other.get("host")
                if isinstance(pid, int) and host == me["host"] and not _pid_alive(pid):
                    warnings.warn(f"removed the stale lock {str(self.file)!r} of fit process {pid} on {host!r}, which "
                                  f"is no longer running (its run was interrupted)", stacklevel=3)
                    try:
                        if self.holder() == other:  # not replaced meanwhile by another process
                            self.file.unlink()
                    except FileNotFoundError:
                        pass
                    continue
                if not other:  # being written by its creator right now, or unreadable
                    time.sleep(0.05)
                    other = self.holder()
                raise CheckpointLockedError(
                    f"ckpt_dir {str(self.file.parent)!r} is in use by another fit: process {other.get('pid', '?')} on "
                    f"host {other.get('host', '?')!r}, since {other.get('since', '?')}. Wait for it to finish or use "
                    f"another ckpt_dir; if that process is gone, delete {str(self.file)!r}") from None
            with os.fdopen(fd, "w") as fh:
                json.dump(me, fh)
            self.held = True
            return self
        raise CheckpointLockedError(f"could not take the lock {str(self.file)!r}: other processes keep replacing it")

    def __exit__(self, *exc):
        if self.held:
            try:
                if self.holder().get("pid") == os.getpid():
                    self.file.unlink()
            except FileNotFoundError:
                pass
            self.held = False
        return False


def _reconcile(path: Path, record: dict, resume: bool, on_mismatch: str) -> None:
    """Compares the run record in ckpt_dir with this run's; see fit's on_mismatch. Leaves
    ckpt_dir holding this run's record."""
    if latest_step(path) is None:
        _write_record(path, record)
        return
    stored = _read_record(path)
    if stored is None:
        if resume:
            warnings.warn(f"ckpt_dir {str(path)!r} holds checkpoints without a run record ({RUN_RECORD}: saved by "
                          f"save_checkpoint or an older version): resuming them without checking that they were "
                          f"trained with this config, model and data", stacklevel=3)
        _write_record(path, record)
        return
    diff = _differences(stored, record)
    if not diff:
        return
    what = _describe_differences(diff)
    if on_mismatch == "raise" and resume:
        raise RunMismatchError(
            f"ckpt_dir {str(path)!r} holds checkpoints of another run, which fit would resume as this one: {what}. "
            f"Use another ckpt_dir, or pass fit(..., on_mismatch=\"restart\") to delete those checkpoints and train "
            f"afresh (on_mismatch=\"resume\" resumes them anyway)")
    if on_mismatch == "resume" and resume:
        warnings.warn(f"resuming checkpoints of another run in ckpt_dir {str(path)!r} (on_mismatch=\"resume\"): "
                      f"{what}", stacklevel=3)
        _write_record(path, record)
        return
    steps = _delete_checkpoints(path)
    warnings.warn(f"deleted checkpoint steps {steps} of another run in ckpt_dir {str(path)!r} and training afresh "
                  f"({'resume=False' if not resume else 'on_mismatch=' + repr(on_mismatch)}): {what}", stacklevel=3)
    _write_record(path, record)


# ----------------------------------------------------------------------------- fit


def fit(
    model: nn.Module,
    x_train,
    y_train,
    cfg: TrainConfig = TrainConfig(),
    *,
    num_classes: int,
    augment: Augment | None = None,
    ckpt_dir: str | os.PathLike | None = None,
    ckpt_every: int | None = None,
    resume: bool = True,
    stop_after: int | None = None,
    progress: bool = True,
    mesh=None,
    input_shape: tuple[int, ...] | None = None,
    on_mismatch: str = "raise",
) -> tuple[TrainState, dict]:
    """Trains `model` on (x_train, y_train); returns (state, history).

    x_train: N >= 1 finite inputs; y_train: integer labels in [0, num_classes), num_classes >= 2.
    ckpt_dir: save every `ckpt_every` (>= 1) steps (default: at the end) and, with resume=True,
    continue from the newest valid checkpoint found there (a corrupt newer one is skipped with
    a warning, and deleted by the next save; with resume=False, the first save deletes any
    checkpoint at the same or a later step). stop_after (>= 0): stop once the step count
    reaches it (simulates an interruption; the schedule still targets cfg.steps).
    mesh: a jax.sharding.Mesh with a "data" axis to shard the batch across its devices.
    input_shape: one unbatched input's shape (checked); default: x_train's, which must then
    have a channel axis, (N, length, C) or (N, H, W, C).
    Checkpoints belong to one run: ckpt_dir also holds RUN_RECORD (run_record: the TrainConfig
    but `chunk`, the model's class and fields, num_classes, input_shape, augment's name, and
    digests of x_train and y_train). Resuming checkpoints whose record differs from this call's
    raises RunMismatchError (a ValueError) naming the fields that differ, unless on_mismatch is
    "restart" (delete them, with a warning, and train afresh) or "resume" (resume them anyway,
    with a warning). resume=False with another run's checkpoints deletes them (warning).
    Checkpoints without a record (save_checkpoint, older versions) are resumed with a warning.
    What the record cannot tell: another augment function with the same name, and, for data
    over 64 MB, values changed outside the 1024 rows hashed (array_digest).
    One fit per ckpt_dir: fit holds ckpt_dir/LOCK_FILE while it runs (pid and host inside); a
    second one raises CheckpointLockedError naming the holder. A lock left by a killed process
    on this host is replaced with a warning.
    history: {"step", "loss", "accuracy"} per chunk and "train_seconds".
    Checked before training (TypeError/ValueError naming the argument): model is a flax Module
    returning num_classes scores per input, augment is callable, mesh a Mesh, ckpt_dir a path
    that is or can be made a writable directory.
    Raises NonFiniteLossError (a ValueError) naming the step if the loss or the parameters
    turn NaN/inf; checked at every host sync (once per cfg.chunk steps) and by save_checkpoint
    before every checkpoint, so the last checkpoint in ckpt_dir is always finite.
    """
    _check_cfg(cfg)
    check_model(model)
    check_num_classes(num_classes)
    check_optional_int(ckpt_every, "ckpt_every", 1)
    check_optional_int(stop_after, "stop_after", 0)
    if augment is not None and not callable(augment):
        raise TypeError(f"augment must be None or a function (key, x batch) -> x batch, "
                        f"got {type(augment).__name__} {augment!r:.80}")
    check_mesh(mesh)
    if on_mismatch not in ON_MISMATCH:
        raise ValueError(f"on_mismatch must be one of {ON_MISMATCH}, got {on_mismatch!r}")
    if not isinstance(resume, (bool, np.bool_)):
        raise TypeError(f"resume must be True or False, got {type(resume).__name__} {resume!r}")
    if ckpt_dir is not None:
        _check_creatable(_check_ckpt_dir(ckpt_dir))
    if input_shape is None:
        x_train = _as_array(x_train, "x_train")
        if x_train.ndim < 3:
            raise ValueError(f"x_train must have shape (N, length, channels) or (N, H, W, channels), "
                             f"got {tuple(x_train.shape)}")
        input_shape = tuple(x_train.shape[1:])
    input_shape = check_input_shape(input_shape)
    x_train = check_inputs(x_train, input_shape, "x_train")
    _check_nonempty_finite(x_train, "x_train", "fit")
    outputs = output_classes(model, input_shape, name="input_shape")
    if outputs != num_classes:
        raise ValueError(f"num_classes is {num_classes} but {type(model).__name__} returns {outputs} class scores "
                         f"per input; pass num_classes={outputs} or build the model with num_classes={num_classes}")
    y_train = _check_labels(y_train, x_train.shape[0], num_classes, "y_train")
    if spans_processes(mesh):  # each process passed its own shard of the training set: train on all of them
        x_train, y_train = gather_process_shards(np.asarray(x_train), np.asarray(y_train))
    if cfg.batch_size > x_train.shape[0]:
        raise ValueError(f"cfg.batch_size {cfg.batch_size} exceeds the {x_train.shape[0]} training inputs")
    if ckpt_dir is None:
        return _fit(model, x_train, y_train, cfg, num_classes, augment, None, ckpt_every, resume, stop_after,
                    progress, mesh, input_shape)
    path = Path(ckpt_dir).resolve()
    with _CkptLock(path):
        _reconcile(path, run_record(model, x_train, y_train, cfg, num_classes, input_shape, augment),
                   bool(resume), on_mismatch)
        return _fit(model, x_train, y_train, cfg, num_classes, augment, ckpt_dir, ckpt_every, resume, stop_after,
                    progress, mesh, input_shape)


def _fit(model, x_train, y_train, cfg, num_classes, augment, ckpt_dir, ckpt_every, resume, stop_after, progress,
         mesh, input_shape) -> tuple[TrainState, dict]:
    """fit's training loop on checked arguments (the lock held, the run record reconciled)."""
    state = create_state(model, input_shape, cfg)
    saved = None  # the step of the newest checkpoint known good (restored or saved by this run)
    if ckpt_dir is not None and resume and latest_step(ckpt_dir) is not None:
        state = restore_checkpoint(ckpt_dir, state)
        saved = int(state.step)
    data_key, aug_key = jax.random.split(jax.random.key(cfg.seed + 1))
    x_dev, y_dev = jnp.asarray(x_train), jnp.asarray(y_train, jnp.int32)
    step_fn = make_step(cfg, num_classes, augment, mesh)
    if mesh is not None:
        replicated = NamedSharding(mesh, P())  # the state and the (small) training arrays
        state, x_dev, y_dev = jax.device_put((state, x_dev, y_dev), replicated)

    def diverged(what: str) -> NonFiniteLossError:
        where = (f"the last checkpoint, step {saved} in ckpt_dir {str(ckpt_dir)!r}, is finite"
                 if saved is not None else "no checkpoint was saved")
        return NonFiniteLossError(f"{what}; lower cfg.learning_rate ({cfg.learning_rate}) or raise "
                                  f"cfg.warmup_steps ({cfg.warmup_steps}), or check the data; {where}")

    def check_window(window: list[dict], last: int) -> np.ndarray:
        """Host copy of the window's losses (steps last-len+1..last); raises at the first non-finite."""
        losses = np.asarray(jax.device_get([m["loss"] for m in window]), np.float64)
        bad = np.flatnonzero(~np.isfinite(losses))
        if bad.size:
            raise diverged(f"training loss became {losses[bad[0]]} at step {last - len(window) + 1 + bad[0]}")
        return losses

    def save(state: TrainState) -> int:
        """Saves the state (save_checkpoint refuses a non-finite one), replacing newer/corrupt steps."""
        try:
            save_checkpoint(ckpt_dir, state, replace_newer=True)
        except NonFiniteLossError as e:
            raise diverged(f"training parameters or optimiser state became non-finite by step {int(state.step)} "
                           f"(the loss was finite)") from e
        return int(state.step)

    per_epoch = x_train.shape[0] // cfg.batch_size
    end = cfg.steps if stop_after is None else min(stop_after, cfg.steps)
    history = {"step": [], "loss": [], "accuracy": []}
    step = int(state.step)
    t0 = time.perf_counter()
    bar = tqdm(total=end, initial=step, disable=not progress, desc="train", unit="step")
    perm_epoch, perm, window = -1, None, []
    try:
        while step < end:
            epoch, pos = divmod(step, per_epoch)
            if epoch != perm_epoch:
                perm, perm_epoch = epoch_permutation(data_key, epoch, x_train.shape[0]), epoch
            state, metrics = step_fn(state, x_dev, y_dev, perm, pos, aug_key)
            window.append(metrics)
            step += 1
            save_now = ckpt_dir is not None and ckpt_every is not None and step % ckpt_every == 0
            if save_now:
                check_window(window, step)  # never checkpoint past a non-finite loss
            if step % cfg.chunk == 0 or step == end:  # sync with the device once per chunk only
                losses = check_window(window, step)
                history["step"].append(step)
                history["loss"].append(float(losses.mean()))
                history["accuracy"].append(float(np.mean(jax.device_get([m["accuracy"] for m in window]))))
                bar.update(len(window))
                bar.set_postfix(loss=f"{history['loss'][-1]:.3f}", acc=f"{history['accuracy'][-1]:.3f}")
                window = []
            if save_now:
                saved = save(state)
    finally:
        bar.close()
    jax.block_until_ready(state.params)
    history["train_seconds"] = time.perf_counter() - t0
    if ckpt_dir is not None and saved != step:
        saved = save(state)
    elif not bool(_all_finite(state.params)):
        raise diverged(f"training parameters became non-finite by step {step} (the loss was finite)")
    return state, history
