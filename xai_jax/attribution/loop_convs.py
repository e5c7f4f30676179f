"""Convolutions as matrix products, for model evaluations inside loops on XLA:CPU.

Measured on the 2-core CPU (jax 0.10.2): the study's 1-D CNN differentiated inside a
`lax.while_loop` / `fori_loop` / `scan` body runs 3.3x slower than the same work outside a
loop, because XLA:CPU emits convolutions in nested computations without its fast
convolution path. The same network with each convolution written as shifted slices and one
`dot_general` (im2col) shows no such penalty (0.29 s in the loop vs 1.09 s with
convolutions, 256 gradients for each of 100 inputs).

`loop_friendly(f)` returns f with every plain convolution of its traced program rewritten
that way, so that methods which evaluate the model inside a loop (error-controlled IG, IG
with chunk_size) keep XLA:CPU's speed. On other backends it returns f unchanged. The
rewrite is exact in real arithmetic (float32 sums are reordered: relative differences of
order 1e-7). Convolutions it does not cover (input dilation, i.e. transposed convolutions;
grouped convolutions) are kept as they are. Jitted sub-functions (pjit) are rewritten
recursively; other higher-order primitives (custom_jvp, custom_vjp, control flow) are
bound unchanged.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.extend import core as jex_core


def _conv_as_dot(lhs, rhs, *, window_strides, padding, lhs_dilation, rhs_dilation, dimension_numbers,
                 feature_group_count, batch_group_count, precision, preferred_element_type, **unused):
    """conv_general_dilated by im2col: shifted strided slices of the padded input, stacked,
    contracted with the kernel in one dot_general."""
    lhs_spec, rhs_spec, out_spec = dimension_numbers
    nd = len(lhs_spec) - 2
    x = jnp.transpose(lhs, (lhs_spec[0], *lhs_spec[2:], lhs_spec[1]))  # (N, spatial..., C)
    k = jnp.transpose(rhs, (*rhs_spec[2:], rhs_spec[1], rhs_spec[0]))  # (spatial..., C, O)
    x = lax.pad(x, jnp.zeros((), x.dtype), [(0, 0, 0), *[(lo, hi, 0) for lo, hi in padding], (0, 0, 0)])
    sizes = k.shape[:nd]
    out = [(x.shape[1 + d] - ((sizes[d] - 1) * rhs_dilation[d] + 1)) // window_strides[d] + 1 for d in range(nd)]
    patches = []
    for offset in itertools.product(*[range(s) for s in sizes]):
        start = [0] + [offset[d] * rhs_dilation[d] for d in range(nd)] + [0]
        limit = [x.shape[0]] + [start[1 + d] + (out[d] - 1) * window_strides[d] + 1 for d in range(nd)] + [x.shape[-1]]
        patches.append(lax.slice(x, start, limit, [1, *window_strides, 1]))
    cols = jnp.stack(patches, axis=-2)  # (N, out..., K, C)
    kernel = k.reshape(len(patches), k.shape[-2], k.shape[-1])  # (K, C, O), offsets in the same order
    y = lax.dot_general(cols, kernel, (((nd + 1, nd + 2), (0, 1)), ((), ())), precision=precision,
                        preferred_element_type=preferred_element_type)  # (N, out..., O)
    inverse = np.argsort([out_spec[0], *out_spec[2:], out_spec[1]])
    return jnp.transpose(y, tuple(inverse))


def _plain(params) -> bool:
    return (params["feature_group_count"] == 1 and params["batch_group_count"] == 1
            and all(d == 1 for d in params["lhs_dilation"]))


def _eval(jaxpr, consts, *args):
    env = {}

    def read(v):
        return v.val if isinstance(v, jex_core.Literal) else env[v]

    for v, c in zip(jaxpr.constvars, consts):
        env[v] = c
    for v, a in zip(jaxpr.invars, args):
        env[v] = a
    for eqn in jaxpr.eqns:
        invals = [read(v) for v in eqn.invars]
        name = eqn.primitive.name
        if name == "conv_general_dilated" and _plain(eqn.params):
            outvals = [_conv_as_dot(*invals, **eqn.params)]
        elif name in ("pjit", "jit") and "jaxpr" in eqn.params:
            closed = eqn.params["jaxpr"]
            outvals = _eval(closed.jaxpr, closed.consts, *invals)
        else:
            bind = eqn.primitive.get_bind_params(eqn.params)
            subfuns, params = bind if isinstance(bind, tuple) else ((), bind)  # older JAX: (subfuns, params)
            with eqn.ctx.manager:
                outvals = eqn.primitive.bind(*subfuns, *invals, **params)
            if not eqn.primitive.multiple_results:
                outvals = [outvals]
        for v, o in zip(eqn.outvars, outvals):
            env[v] = o
    return [read(v) for v in jaxpr.outvars]


def convs_as_matmuls(f: Callable) -> Callable:
    """f with its plain convolutions rewritten as im2col matrix products (any backend)."""

    def g(*args):
        closed, shape = jax.make_jaxpr(f, return_shape=True)(*args)
        out = _eval(closed.jaxpr, closed.consts, *args)
        return jax.tree.unflatten(jax.tree.structure(shape), out)

    return g


def loop_friendly(f: Callable) -> Callable:
    """convs_as_matmuls(f) on XLA:CPU (see the module docstring); f itself elsewhere."""
    return convs_as_matmuls(f) if jax.default_backend() == "cpu" else f
