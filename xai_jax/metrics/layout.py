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


def _to_last(v, axis: int):
    """One input's array (or a pytree of them) with its channel axis moved last."""
    return jax.tree.map(lambda a: jnp.moveaxis(a, axis, -1), v)


def _input_layout_method(method: Callable, axis: int) -> Callable:
    """method(x, t[, key]) of the caller's layout as a method of channels-last x: maps shaped
    like x come back channels-last, spatial maps as they are. Keeps the method's attributes."""
    def wrapped(x, t, *rest):
        out = method(jnp.moveaxis(x, -1, axis), t, *rest)
        return jnp.moveaxis(out, axis, -1) if out.ndim == x.ndim else out

    from xai_jax.method import Method
    if isinstance(method, Method):  # every field kept (model, keyed, precision, returns_delta, extras, ...)
        return method.replace(fn=wrapped, rebinder=None, raw=None)
    for name in ("model_fn", "keyed", "precision", "returns_delta", "num_classes"):
        if hasattr(method, name):
            setattr(wrapped, name, getattr(method, name))
    wrapped.__name__ = getattr(method, "__name__", "method")
    return wrapped


def with_channel_axis(metric: Callable, *, input_shaped: tuple[str, ...] = ()) -> Callable:
    """Adds channel_axis= to a metric metric(f, xs, ...) written for channels-last inputs.
    input_shaped: the names of arguments laid out like the inputs, moved with them: for
    "attributions" / "saliency" (the metric's third argument) an (N, *x.shape) array or a
    method; for "perturb_fn" a function (key, x) -> I or (I, perturbed x)."""
    return _with_channel_axis(metric, input_shaped)


def _with_channel_axis(metric: Callable, input_shaped: tuple[str, ...]) -> Callable:
    @functools.wraps(metric)
    def wrapper(f, xs, *args, channel_axis: int = -1, **kwargs):
        channel_axis = check_int(channel_axis, "channel_axis")
        if channel_axis == -1:
            return metric(f, xs, *args, **kwargs)  # the metric checks xs itself
        if not hasattr(xs, "ndim"):
            try:
                xs = np.asarray(xs)
            except (ValueError, TypeError):
                return metric(f, xs, *args, **kwargs)  # not an array: the metric's own error
            if xs.dtype == object or xs.ndim < 2:
                return metric(f, xs, *args, **kwargs)
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
        for name in ("attributions", "saliency"):  # the metric's third argument, laid out like the inputs
            if name in input_shaped:
                if args:
                    args = (_attributions_last(args[0], xs, axis, move), *args[1:])
                elif name in kwargs:
                    kwargs[name] = _attributions_last(kwargs[name], xs, axis, move)
        if "perturb_fn" in input_shaped and callable(kwargs.get("perturb_fn")):
            perturb = kwargs["perturb_fn"]
            kwargs["perturb_fn"] = lambda key, x: _to_last(perturb(key, jnp.moveaxis(x, -1, axis)), axis)
        return metric(f, xs_last, *args, **kwargs)

    wrapper.__doc__ = (metric.__doc__ or "").rstrip() + "\n" + CHANNEL_AXIS_DOC
    return wrapper


def _attributions_last(attributions, xs, axis: int, move):
    if callable(attributions):
        if getattr(attributions, "returns_delta", False):
            return attributions  # refused by the metric with its own message
        return _input_layout_method(attributions, axis)
    if not hasattr(attributions, "shape"):
        try:
            attributions = np.asarray(attributions)
        except (ValueError, TypeError):
            return attributions
    if tuple(attributions.shape) == tuple(xs.shape):
        return (jnp.moveaxis if isinstance(attributions, jax.Array) else np.moveaxis)(attributions, 1 + axis, -1)
    return attributions  # spatial maps: no channel axis
