"""Import the study's Keras 2.4 HDF5 weights into the Flax models.

Keras stores weights as model_weights/<layer>/<layer>/{kernel:0, bias:0}. Conv kernels are
(k..., in, out) and Dense kernels (in, out), the same layouts as flax.linen, and our models
name their layers as Keras does, so the mapping is by name with every shape checked.
"""

from __future__ import annotations

import os
from pathlib import Path

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from xai_jax.study.models.validate import check_input_shape, check_model, param_shapes


def load_keras_h5(
    path: str | os.PathLike, model: nn.Module, input_shape: tuple[int, ...]
) -> dict:
    """Returns flax params for `model` read from a Keras .h5 file.

    input_shape: one unbatched input, e.g. (40, 1) or (224, 224, 3); used to know the
    parameter shapes that `model` expects. Raises ValueError naming the layer and both
    shapes when the file does not match the model, or naming the layer and weight when a
    weight is not numeric or holds NaN or inf; FileNotFoundError when the file is missing;
    TypeError naming path, model or input_shape when one is of the wrong kind.
    """
    import h5py

    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be the path (str or os.PathLike) of a Keras .h5 file, got {type(path).__name__}")
    check_model(model)
    input_shape = check_input_shape(input_shape)
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"path {str(path)!r} is a folder, expected a Keras .h5 file")
    if not path.is_file():
        raise FileNotFoundError(f"path {str(path)!r}: no such Keras .h5 file")
    expected = param_shapes(model, input_shape)
    try:
        h5 = h5py.File(path, "r")
    except OSError as e:
        raise ValueError(f"path {str(path)!r} is not a readable HDF5 file: {e}") from e
    with h5:
        if "model_weights" not in h5:
            raise ValueError(f"{path}: no 'model_weights' group; not a Keras model file")
        group = h5["model_weights"]
        in_file = sorted(k for k in group if len(group[k]) > 0)
        missing = sorted(set(expected) - set(in_file))
        extra = sorted(set(in_file) - set(expected))
        if missing or extra:
            raise ValueError(
                f"{path}: layers do not match the model; missing in file: {missing}, "
                f"not in model: {extra}"
            )
        params = {}
        for layer, leaves in expected.items():
            params[layer] = {}
            for leaf, spec in leaves.items():
                key = f"{layer}/{leaf}:0"
                if key not in group[layer]:
                    raise ValueError(f"{path}: layer {layer!r} has no weight {leaf}:0")
                dataset = group[layer][key]
                kind = getattr(dataset, "dtype", None)
                if kind is None or kind.kind not in "fiu":
                    raise ValueError(f"{path}: layer {layer!r} weight {leaf!r} has dtype {kind} "
                                     f"(not numeric); expected float weights")
                value = np.asarray(dataset, dtype=np.float32)
                if value.shape != spec.shape:
                    raise ValueError(
                        f"{path}: layer {layer!r} weight {leaf!r} has shape {value.shape}, "
                        f"the model expects {spec.shape}"
                    )
                if not np.isfinite(value).all():
                    raise ValueError(
                        f"{path}: layer {layer!r} weight {leaf!r} holds {int((~np.isfinite(value)).sum())} "
                        f"non-finite values (NaN/inf) of {value.size}; expected finite weights"
                    )
                params[layer][leaf] = jnp.asarray(value)
    return params
