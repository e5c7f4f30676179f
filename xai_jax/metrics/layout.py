"""The input layout of the metrics that mask or perturb inputs by maps of their spatial
shape: `channel_axis=` as the layer methods take it (xai_jax.attribution.layers).

The metrics compute channels-last; with another channel axis the inputs are moved to
channels-last and the model is wrapped to move them back, so f sees its own layout.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from xai_jax.checks import check_int

CHANNEL_AXIS_DOC = """
    channel_axis: the channel axis of one input (-1, the default, channels last; 0 for
      channels-first models such as Equinox's). Maps keep the inputs' spatial shape."""


def with_channel_axis(metric: Callable) -> Callable:
    """Adds channel_axis= to a metric metric(f, xs, ...) written for channels-last inputs."""

    @functools.wraps(metric)
    def wrapper(f, xs, *args, channel_axis: int = -1, **kwargs):
        channel_axis = check_int(channel_axis, "channel_axis")
        if channel_axis == -1 or not hasattr(xs, "ndim"):
            return metric(f, xs, *args, **kwargs)  # the metric checks xs itself
        rank = xs.ndim - 1  # one input's rank
        if not -rank <= channel_axis < rank:
            raise ValueError(f"channel_axis={channel_axis} is out of range for inputs of shape {tuple(xs.shape[1:])}")
        axis = channel_axis % rank
        if axis == rank - 1:
            return metric(f, xs, *args, **kwargs)
        move = jnp.moveaxis if isinstance(xs, jax.Array) else np.moveaxis
        xs_last = move(xs, 1 + axis, -1)
        if callable(f):
            inner = f
            f = lambda x: inner(jnp.moveaxis(x, -1, axis))  # noqa: E731
        return metric(f, xs_last, *args, **kwargs)

    wrapper.__doc__ = (metric.__doc__ or "").rstrip() + "\n" + CHANNEL_AXIS_DOC
    return wrapper
