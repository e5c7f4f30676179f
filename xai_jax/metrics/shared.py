"""Plumbing the metric families share: the predicted-class marker, argument preparation for
the model-truth metrics, and the check of the model's scores (one wording)."""

from __future__ import annotations

import numpy as np

from xai_jax.checks import (
    check_batch,
    check_callable,
    check_finite_maps,
    check_int,
    check_mesh,
    check_targets,
    num_outputs,
)
from xai_jax.distributed import gather_process_shards, spans_processes

PREDICTED = -1  # internal marker for "the predicted class" (targets=None); never accepted from callers


def prepare(f, xs, saliency, targets, batch_size, who: str, mesh=None):
    """Checked (xs, maps, targets) for a model-truth metric: float finite xs (N >= 1, ...),
    finite maps of the inputs' spatial shape, targets in [0, classes of f) or None."""
    check_callable(f, "f")
    xs = np.asarray(check_batch(xs, "xs", who=who), np.float32)
    if xs.ndim < 3:
        raise ValueError(f"xs must be (N, length, channels) or (N, H, W, channels), got shape {xs.shape}")
    check_int(batch_size, "batch_size", 1)
    check_mesh(mesh)
    maps = check_finite_maps(saliency, xs.shape[:-1])
    n_classes = num_outputs(f, xs.shape[1:])
    if targets is None:
        targets = np.full(xs.shape[0], PREDICTED, np.int32)
    else:
        targets = check_targets(targets, xs.shape[0], n_classes)
    if spans_processes(mesh):  # each process passed its own shard: the metric runs on the global set
        xs, maps, targets = gather_process_shards(xs, maps, targets)
    return xs, maps, targets


def check_scores(values: np.ndarray, who: str, what: str = "the model f returned",
                 where: str = "x or its masked copies") -> None:
    """The model's scores on the (masked) inputs must be finite: NaN would pass silently as
    'no increase' or poison an AUC."""
    bad = ~np.isfinite(values.reshape(len(values), -1)).all(1)
    if bad.any():
        idx = np.flatnonzero(bad)
        raise ValueError(f"{who}: {what} NaN or inf scores for inputs {idx[:5].tolist()}"
                         f"{' ...' if idx.size > 5 else ''} (on {where})")


