"""One mechanism for the modified-gradient family: a jaxpr interpreter with per-primitive
backward rules (the pattern of JAX's "Writing custom interpreters" guide).

`propagate(f, x, start, rules)` traces f(x) -> class scores to a jaxpr (jax.make_jaxpr),
evaluates it forward while recording every value, then walks the equations backward from
the cotangent start(scores). Each equation's cotangent map is chosen by `rules`
(a `Rules`): the plain vector-Jacobian product of the primitive unless the rules override
it. Nested jaxprs (jit, custom_jvp_call as in jax.nn.relu, custom_vjp_call, closed_call,
remat) are entered, so the mechanism works on any JAX function: flax.linen, NNX,
Equinox, Haiku and plain JAX alike. Everything is traced JAX: the result composes with
jax.jit and jax.vmap.

Vocabulary. A value is *live* when it depends on the input x and is floating point (the
weights, BatchNorm statistics and everything computed from them alone are constants).
Only live equations are recorded and given rules. A *linear layer* is a convolution or
dot_general with one live operand (the other is its weight), or a reduce_sum /
reduce_window_sum (sum or average pooling, no weight). With `fuse=True` (LRP) a linear
layer owns the chain of equations after it that is affine with constants and used once:
its bias add and shape changes, and, with `canonize=True`, the multiplications,
divisions and subtractions of a BatchNorm in inference mode. The layer is then the
affine map z = P(L_W(x)) * s + c (P the shape changes, s and c constants shaped like z),
i.e. the convolution with the BatchNorm merged into its weights W' = W s and bias c, as
Zennit's canonizer merges them. Layers are numbered in call order (`Layer.index`) and
named by the equation's name stack (flax.linen's module path, e.g. "block/conv").

A primitive that the rules cannot handle raises `PropagationError` naming the primitive
and the layer, unless the method was asked for fallback="gradient" (the plain VJP there).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.core import ClosedJaxpr, Jaxpr, Literal

LINEAR_WEIGHTED = ("conv_general_dilated", "dot_general")
LINEAR_POOLS = ("reduce_sum", "reduce_window_sum")
SHAPE = ("reshape", "transpose", "squeeze", "expand_dims", "broadcast_in_dim", "concatenate", "pad", "slice",
         "dynamic_slice", "dynamic_update_slice", "rev", "convert_element_type", "copy", "copy_p", "gather",
         "reduce_precision", "select_n", "real", "optimization_barrier")
CHAIN_SHAPE = ("reshape", "transpose", "squeeze", "expand_dims", "convert_element_type", "copy", "copy_p")
AFFINE_CONST = ("add", "sub", "mul", "div", "neg")   # with one live operand: affine in it
UNARY = ("tanh", "logistic", "exp", "exp2", "log", "log1p", "expm1", "abs", "sqrt", "rsqrt", "cbrt",
         "integer_pow", "erf", "erfc", "sin", "cos", "atan", "sinh", "cosh", "asinh", "square", "sign", "floor",
         "ceil", "round", "pow", "max", "min", "clamp", "erf_inv", "tan", "atan2")
SELECT_MAX = ("reduce_max", "reduce_min", "reduce_window_max", "reduce_window_min")
FALLBACKS = (None, "gradient")
_NESTED = ("jaxpr", "call_jaxpr", "fun_jaxpr")
CALLS = ("jit", "pjit", "closed_call", "core_call", "custom_jvp_call", "custom_vjp_call", "custom_vjp_call_jaxpr",
         "remat", "remat2", "checkpoint", "named_call")


class PropagationError(ValueError):
    """A primitive the chosen propagation rules cannot handle (named with its layer)."""


def _live_dtype(aval) -> bool:
    return jnp.issubdtype(aval.dtype, jnp.inexact)


def _inner(eqn):
    """(jaxpr, consts) of a call-like equation's body, or None (loops and conditionals are
    primitives like any other)."""
    if eqn.primitive.name not in CALLS:
        return None
    for key in _NESTED:
        p = eqn.params.get(key)
        if isinstance(p, ClosedJaxpr):
            return p.jaxpr, p.consts
        if isinstance(p, Jaxpr):
            return p, ()
    return None


def bind(eqn, invals: Sequence[Any]) -> list:
    """The equation's outputs for these inputs (as jax.core.eval_jaxpr evaluates it)."""
    params = eqn.primitive.get_bind_params(eqn.params)
    subfuns: Sequence = ()
    if isinstance(params, tuple):  # JAX < 0.7: (subfuns, params)
        subfuns, params = params
    with eqn.ctx.manager:
        out = eqn.primitive.bind(*subfuns, *invals, **params)
    return list(out) if eqn.primitive.multiple_results else [out]


def _zeros_ct(aval):
    if _live_dtype(aval):
        return jnp.zeros(aval.shape, aval.dtype)
    return np.zeros(aval.shape, jax.dtypes.float0)


@dataclasses.dataclass(eq=False)
class Step:
    """One live equation as the backward pass sees it: the equation, its recorded inputs and
    outputs (and those of the reference pass, for DeepLIFT), which inputs are live, the
    layer name (name stack) and the nested trace of a call-like equation."""

    eqn: Any
    invals: list
    outvals: list
    live: tuple
    name: str
    depends: tuple = ()
    refs_in: list | None = None
    refs_out: list | None = None
    sub: Trace | None = None
    layer: Layer | None = None
    absorbed: bool = False

    @property
    def primitive(self) -> str:
        return self.eqn.primitive.name

    def vjp(self, cts: Sequence[Any], at: Sequence[Any] | None = None) -> list:
        """The plain vector-Jacobian product at the recorded inputs (or at `at`, e.g. the
        reference inputs): cotangents of the live inputs (None elsewhere)."""
        idx = [i for i, t in enumerate(self.live) if t]
        at = self.invals if at is None else at

        def fn(*live_vals):
            args = list(at)
            for i, v in zip(idx, live_vals):
                args[i] = v
            return bind(self.eqn, args)

        _, pull = jax.vjp(fn, *[at[i] for i in idx])
        cts = [c if _live_dtype(v.aval) else _zeros_ct(v.aval) for c, v in zip(cts, self.eqn.outvars)]
        got = pull(cts)
        out: list = [None] * len(self.invals)
        for i, g in zip(idx, got):
            out[i] = g
        return out

    def where(self) -> str:
        return f"primitive {self.primitive!r} in layer {self.name!r}" if self.name else \
            f"primitive {self.primitive!r} (outside any named layer)"


@dataclasses.dataclass(eq=False)
class Trace:
    jaxpr: Any
    steps: list
    live: dict   # Var -> bool


class Layer:
    """A linear layer with its fused affine chain: z = P(L_W(x)) * s + c (module docstring).

    kind: "conv", "dense" or "pool" (reduce_sum / reduce_window_sum: no weight).
    index: its place among the conv/dense layers in call order (None for a pool); kinds: the
      kinds of all conv/dense layers of the model in call order.
    x: the layer's input; z: its recorded output (the end of the chain).
    """

    def __init__(self, step: Step, chain: list[Step], index: int | None, kinds: Sequence[str] = ()):
        self.step, self.chain, self.index, self.kinds = step, chain, index, list(kinds)
        self.name = step.name
        prim = step.primitive
        self.kind = "conv" if prim == "conv_general_dilated" else "dense" if prim == "dot_general" else "pool"
        self.k = step.live.index(True)
        self.x = step.invals[self.k]
        self.w = step.invals[1 - self.k] if self.kind != "pool" else None
        self.z = (chain[-1] if chain else step).outvals[0]
        a = step.outvals[0]
        self.c = self._replay(jnp.zeros_like(a))
        self.s = self._replay(jnp.ones_like(a)) - self.c

    def _replay(self, a, affine: bool = True):
        for st in self.chain:
            if st.primitive not in CHAIN_SHAPE and not affine:
                continue
            args = list(st.invals)
            args[st.live.index(True)] = a
            a = bind(st.eqn, args)[0]
        return a

    def linear(self, u, weight: str = "id"):
        """P(L_W(u)) with the weight W modified: "id", "pos" (max(W, 0)), "neg" (min(W, 0)),
        "sq" (W^2) or "ones"; a pool has no weight (all modifiers but "neg" leave it as is)."""
        if self.kind == "pool":
            if weight == "neg":
                return jnp.zeros_like(self.z)
            return self._replay(bind(self.step.eqn, [u])[0], affine=False)
        w = {"id": lambda v: v, "pos": lambda v: jnp.maximum(v, 0), "neg": lambda v: jnp.minimum(v, 0),
             "sq": jnp.square, "ones": jnp.ones_like}[weight](self.w)
        args = [u, w] if self.k == 0 else [w, u]
        return self._replay(bind(self.step.eqn, args)[0], affine=False)

    def out(self, u, weight: str = "id", bias: bool = True, gamma: float = 0.0):
        """The layer's output for input u with Zennit's parameter modifier applied to the
        merged weights W' = W s and bias c: "id"; "pos"/"neg" (clamped); "sq" (W'^2, c^2);
        "ones" (W' = 1, no bias); gamma > 0 with "pos"/"neg": W' + gamma clamp(W'), as the
        Gamma rule. bias=False zeroes the bias."""
        s, c = self.s, self.c
        sp, sn = jnp.maximum(s, 0), jnp.minimum(s, 0)
        if weight == "id":
            y, b = self.linear(u) * s, c
        elif weight in ("pos", "neg"):
            other = "neg" if weight == "pos" else "pos"
            clamp = jnp.maximum if weight == "pos" else jnp.minimum
            y = self.linear(u, weight) * sp + self.linear(u, other) * sn
            b = clamp(c, 0)
            if gamma:
                y, b = self.linear(u) * s + gamma * y, c + gamma * b
        elif weight == "sq":
            y, b = self.linear(u, "sq") * jnp.square(s), jnp.square(c)
        elif weight == "ones":
            y, b = self.linear(u, "ones"), jnp.zeros_like(c)
        else:
            raise ValueError(f"unknown weight modifier {weight!r}")
        return y + b if bias else y


class Rules:
    """Backward rules: the plain VJP everywhere (override `backward`). fuse: linear layers own
    their affine chains (LRP); reference: also evaluate the forward on a reference input
    (DeepLIFT)."""

    fuse = False
    canonize = True
    reference = False

    def backward(self, step: Step, cts: list) -> list:
        return step.vjp(cts)

    def layer(self, layer: Layer, ct) -> Any:
        """The cotangent of a fused layer's input given that of its output (fuse=True only)."""
        raise NotImplementedError


def unsupported(step: Step, why: str):
    raise PropagationError(
        f"{why}: {step.where()}. Pass fallback='gradient' to use the plain gradient there instead")


class _Interpreter:
    def __init__(self, rules: Rules, fallback: str | None):
        if fallback not in FALLBACKS:
            raise ValueError(f"fallback must be one of {FALLBACKS}, got {fallback!r}")
        self.rules, self.fallback = rules, fallback
        self.layers = 0
        self.kinds: list[str] = []   # "conv" / "dense" of each weighted layer, in call order

    # ---------------------------------------------------------------- forward
    def forward(self, jaxpr, consts, args, live, refs, prefix: str, depends: Sequence[bool] | None = None):
        env: dict = {}
        renv: dict = {}
        lenv: dict = {}
        denv: dict = {}   # Var -> depends on x (any dtype: a comparison of live values too)

        def read(v, e=env):
            return v.val if isinstance(v, Literal) else e[v]

        def is_live(v):
            return False if isinstance(v, Literal) else lenv[v]

        for v, c in zip(jaxpr.constvars, consts):
            env[v] = renv[v] = c
            lenv[v] = denv[v] = False
        for v, a, t, r, d in zip(jaxpr.invars, args, live, refs, live if depends is None else depends):
            env[v], lenv[v], renv[v], denv[v] = a, bool(t) and _live_dtype(v.aval), r, bool(d)
        uses: dict = {}
        for eqn in jaxpr.eqns:
            for v in eqn.invars:
                if not isinstance(v, Literal):
                    uses[v] = uses.get(v, 0) + 1
        for v in jaxpr.outvars:
            if not isinstance(v, Literal):
                uses[v] = uses.get(v, 0) + 2   # an output is never inside a chain
        steps: list[Step] = []
        heads: dict = {}
        for eqn in jaxpr.eqns:
            invals = [read(v) for v in eqn.invars]
            flags = tuple(is_live(v) for v in eqn.invars)
            depends = tuple(not isinstance(v, Literal) and denv[v] for v in eqn.invars)
            stack = str(eqn.source_info.name_stack)
            name = "/".join(p for p in (prefix, stack) if p)
            if not any(flags) and not (any(depends) and _inner(eqn) is not None):
                outs = bind(eqn, invals)
                refs_out = bind(eqn, [read(v, renv) for v in eqn.invars]) if self.rules.reference and any(depends) \
                    else outs
                for v, o, r in zip(eqn.outvars, outs, refs_out):
                    env[v], renv[v] = o, r
                    lenv[v], denv[v] = False, any(depends)
                continue
            refs_in = [read(v, renv) for v in eqn.invars] if self.rules.reference else None
            inner = _inner(eqn)
            sub = refs_out = None
            if inner is not None:
                outs, refs_out, sub = self.forward(inner[0], inner[1], invals, flags,
                                                   refs_in if refs_in is not None else invals, name, depends)
                refs_out = refs_out if self.rules.reference else None
            else:
                outs = bind(eqn, invals)
                refs_out = bind(eqn, refs_in) if self.rules.reference else None
            step = Step(eqn, invals, outs, flags, name, depends, refs_in, refs_out, sub)
            for i, v in enumerate(eqn.outvars):
                env[v] = outs[i]
                renv[v] = refs_out[i] if refs_out is not None else outs[i]
                lenv[v], denv[v] = _live_dtype(v.aval), True
            if self.rules.fuse:
                self._chain(step, heads, uses)
            steps.append(step)
        outs = [read(v) for v in jaxpr.outvars]
        routs = [read(v, renv) for v in jaxpr.outvars]
        return outs, routs, Trace(jaxpr, steps, lenv)

    def _chain(self, step: Step, heads: dict, uses: dict) -> None:
        """Numbers the linear layers and grows the affine chain of the layer this step continues
        (heads: the live Var at the end of a layer's chain so far -> the layer's step)."""
        prim, flags = step.primitive, step.live
        if (prim in LINEAR_WEIGHTED and sum(flags) == 1) or prim in LINEAR_POOLS:
            step.layer = [self.layers if prim in LINEAR_WEIGHTED else None]  # a Layer in the backward pass
            if prim in LINEAR_WEIGHTED:
                self.layers += 1
                self.kinds.append("conv" if prim == "conv_general_dilated" else "dense")
            step.chain = []
            heads[step.eqn.outvars[0]] = step
            return
        if sum(flags) != 1 or len(step.eqn.outvars) != 1:
            return
        src = step.eqn.invars[flags.index(True)]
        head = heads.get(src)
        allowed = CHAIN_SHAPE + (AFFINE_CONST if self.rules.canonize else ("add", "sub"))
        if head is None or uses.get(src) != 1 or prim not in allowed or (prim == "div" and flags[1]):
            return
        head.chain.append(step)
        step.absorbed = True
        heads[step.eqn.outvars[0]] = head

    # --------------------------------------------------------------- backward
    def backward(self, trace: Trace, out_cts: list) -> list:
        ct: dict = {}

        def add(v, c):
            if c is None or isinstance(v, Literal) or not trace.live.get(v, False):
                return
            ct[v] = c if v not in ct else ct[v] + c

        for v, c in zip(trace.jaxpr.outvars, out_cts):
            add(v, c)
        for step in reversed(trace.steps):
            if step.absorbed:
                continue
            chain = getattr(step, "chain", None)
            end = (chain[-1] if chain else step).eqn.outvars
            cts = [ct.pop(v, None) if not isinstance(v, Literal) else None for v in end]
            if all(c is None for c in cts):
                continue
            cts = [c if c is not None else _zeros_ct(v.aval) for c, v in zip(cts, end)]
            if step.sub is not None:
                in_cts = self.backward(step.sub, cts)
            elif isinstance(step.layer, list):
                step.layer = Layer(step, chain, step.layer[0], self.kinds)
                in_cts = [None] * len(step.invals)
                in_cts[step.layer.k] = self.rules.layer(step.layer, cts[0])
            else:
                in_cts = self.rules.backward(step, cts)
            for v, c, t in zip(step.eqn.invars, in_cts, step.live):
                if t:
                    add(v, c)
        return [ct.get(v) for v in trace.jaxpr.invars]


def propagate(f: Callable, x: jax.Array, start: Callable, rules: Rules, *, reference: jax.Array | None = None,
              fallback: str | None = None) -> tuple[jax.Array, jax.Array]:
    """(cotangent of x, scores f(x)) after the backward pass of `rules` from start(scores).

    start: scores -> the cotangent of the scores (e.g. one_hot(target) * scores[target]).
    reference: the reference input of a rule set with rules.reference (DeepLIFT's baseline).
    fallback: None (an unhandled primitive raises PropagationError) or "gradient".
    """
    closed = jax.make_jaxpr(f)(x)
    interp = _Interpreter(_WithFallback(rules) if fallback == "gradient" else rules, fallback)
    refs = [reference if reference is not None else x]
    outs, _, trace = interp.forward(closed.jaxpr, closed.consts, [x], (True,), refs, "")
    if len(outs) != 1:
        raise ValueError(f"f must return one array of class scores, got {len(outs)} outputs")
    scores = outs[0]
    (g,) = interp.backward(trace, [start(scores)])
    if g is None:
        g = jnp.zeros_like(x)
    return g, scores


class _WithFallback(Rules):
    """`rules` with the plain VJP wherever they raise PropagationError (fallback="gradient")."""

    def __init__(self, rules: Rules):
        self.inner = rules
        self.fuse, self.canonize, self.reference = rules.fuse, rules.canonize, rules.reference

    def backward(self, step, cts):
        try:
            return self.inner.backward(step, cts)
        except PropagationError:
            return step.vjp(cts)

    def layer(self, layer, ct):
        return self.inner.layer(layer, ct)
