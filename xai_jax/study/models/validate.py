"""Checks shared by the model helpers and training: a flax module, an input shape, a parameter
tree, and what the module makes of one input (parameter shapes, class scores). Shapes come from
jax.eval_shape (nothing is computed); errors name the argument, what was received and what was
expected, instead of surfacing as flax scope errors deep inside `apply`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from xai_jax.checks import check_int, error_summary


def check_model(model: Any, name: str = "model") -> nn.Module:
    """A flax.linen Module (TypeError otherwise, e.g. for a preset name)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"{name} must be a flax.linen Module (e.g. xai_jax.study.models.mnist1d_cnn()), "
                        f"got {type(model).__name__} {model!r:.80}")
    return model


def check_input_shape(shape: Any, name: str = "input_shape") -> tuple[int, ...]:
    """One unbatched input's shape: a non-empty tuple (or list) of ints >= 1, e.g. (40, 1)."""
    if not isinstance(shape, (tuple, list)):
        raise TypeError(f"{name} must be a tuple of positive ints (one unbatched input's shape, e.g. (40, 1)), "
                        f"got {type(shape).__name__} {shape!r:.80}")
    if not shape:
        raise ValueError(f"{name} must have at least one axis (one unbatched input's shape, e.g. (40, 1)), got ()")
    return tuple(check_int(d, f"{name}[{i}]", 1) for i, d in enumerate(shape))


def check_num_classes(num_classes: Any, name: str = "num_classes") -> int:
    """A classifier's number of classes: an int >= 2."""
    return check_int(num_classes, name, 2)


def param_shapes(model: nn.Module, input_shape: tuple[int, ...], name: str = "input_shape") -> Mapping:
    """The parameter shapes model.init makes for a batch of one input of input_shape;
    ValueError naming `name` when the model cannot take such inputs."""
    x = jnp.zeros((1, *input_shape), jnp.float32)
    try:
        variables = jax.eval_shape(lambda: model.init(jax.random.key(0), x))
    except Exception as e:  # the model's own error, re-raised with what the caller passed
        raise ValueError(f"{type(model).__name__} cannot take inputs of shape {tuple(input_shape)} "
                         f"({name}; a batch is (N, {', '.join(map(str, input_shape))})): {error_summary(e)}") from e
    return variables.get("params", {})


def output_classes(model: nn.Module, input_shape: tuple[int, ...], params: Any = None,
                   name: str = "input_shape") -> int:
    """The number of class scores model returns per input (its output must be (N, C));
    with params=None the model's freshly initialised parameters are used."""
    x = jax.ShapeDtypeStruct((1, *input_shape), jnp.float32)
    try:
        if params is None:
            out = jax.eval_shape(lambda xb: model.init_with_output(jax.random.key(0), xb)[0], x)
        else:
            out = jax.eval_shape(lambda p, xb: model.apply({"params": p}, xb), params, x)
    except Exception as e:
        raise ValueError(f"{type(model).__name__} cannot take inputs of shape {tuple(input_shape)} ({name}): "
                         f"{error_summary(e)}") from e
    if not hasattr(out, "shape") or len(out.shape) != 2:
        raise ValueError(f"model must return logits of shape (N, num_classes); for a batch of one input of shape "
                         f"{tuple(input_shape)} it returned {getattr(out, 'shape', type(out).__name__)}")
    return int(out.shape[1])


def params_mismatch(expected: Any, params: Any, path: str = "params") -> str | None:
    """Where the tree `params` differs from `expected` (ShapeDtypeStructs): a missing or extra
    layer, a non-array leaf, a non-float leaf, or a shape; None when it fits."""
    if isinstance(expected, Mapping):
        if not isinstance(params, Mapping):
            return f"{path} is a {type(params).__name__}, expected a dict with keys {sorted(expected)}"
        missing, extra = sorted(set(expected) - set(params)), sorted(set(params) - set(expected))
        if missing or extra:
            hint = " (a variables dict? pass its ['params'] entry)" if extra == ["params"] else ""
            return f"{path} lacks {missing} and has unexpected {extra}{hint}"
        for key in expected:
            problem = params_mismatch(expected[key], params[key], f"{path}[{key!r}]")
            if problem:
                return problem
        return None
    if not hasattr(params, "shape") or not hasattr(params, "dtype"):
        return f"{path} is a {type(params).__name__}, expected an array of shape {tuple(expected.shape)}"
    if not jnp.issubdtype(params.dtype, jnp.floating):
        return f"{path} has dtype {params.dtype}, expected a float array"
    if tuple(params.shape) != tuple(expected.shape):
        return f"{path} has shape {tuple(params.shape)}, expected {tuple(expected.shape)}"
    return None


def check_params(model: nn.Module, params: Any, input_shape: tuple[int, ...], x_name: str = "x") -> int:
    """Checks that params is model's parameter tree for inputs of input_shape (the one-input shape
    of `x_name`); returns the number of class scores. TypeError unless params is a dict;
    ValueError naming the first leaf whose shape differs (params of another model, or x of
    another input shape)."""
    if not isinstance(params, Mapping):
        raise TypeError(f"params must be the model's parameter dict (state.params, or load_keras_h5's result), "
                        f"got {type(params).__name__}")
    expected = param_shapes(model, input_shape, x_name)
    problem = params_mismatch(expected, params)
    if problem:
        raise ValueError(f"params do not fit {type(model).__name__} for {x_name} of one-input shape "
                         f"{tuple(input_shape)}: {problem}; {x_name} must have the input shape the params were "
                         f"made for, and params must belong to this model")
    return output_classes(model, input_shape, params, x_name)

