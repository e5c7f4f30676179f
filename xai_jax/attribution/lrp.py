"""Layer-wise Relevance Propagation: rules, composites and the BatchNorm canonizer.

LRP (Bach et al. 2015, "On pixel-wise explanations for non-linear classifier decisions by
layer-wise relevance propagation", PLOS ONE; Montavon et al. 2019, "Layer-wise relevance
propagation: an overview") redistributes the target's logit, layer by layer, down to the
input. Relevance is propagated backward through the jaxpr interpreter of
xai_jax.attribution.propagation, as the cotangent. Starting relevance: R = one_hot(target) *
F(x) (the target logit, as Captum's LRP; Zennit's users pass the same as the output
gradient).

Linear layers (a convolution or dense layer, with its bias and, with canonize=True, the
BatchNorm after it merged in: z = W'x + b') follow a rule. With x+ = max(x, 0),
x- = min(x, 0), W+/W- and b+/b- the clamped weights and bias, stab(z) = z + eps * sign(z)
(sign(0) = 1), the rules are those of Zennit 1.0 (same names, same stabilisers):

    Epsilon(eps)      R_i = x_i sum_j W_ji R_j / stab(z_j)                   (eps = 0: LRP-0)
    ZPlus()           z+ = W+x+ + b+ + W-x-;  R_i = x+_i (W+^T s)_i + x-_i (W-^T s)_i, s = R / stab(z+)
    AlphaBeta(a, b)   a * (the ZPlus term) - b * (the same with W+ and W- swapped, bias b-),
                      a - b = 1: AlphaBeta(2, 1) (alpha2beta1), AlphaBeta(1, 0) (alpha1beta0)
    Gamma(g)          the ZPlus / negative terms with W + g W+ (and W + g W-), for the units
                      with z > 0 (and z < 0 resp.) (the generalised gamma rule)
    ZBox(low, high)   z = Wx - W+ l - W- h;  R_i = x_i (W^T s)_i - l_i (W+^T s)_i - h_i (W-^T s)_i
    Flat()            R_i = sum_j [i feeds j] R_j / stab(#inputs of j)  (all weights 1, no bias)
    WSquare()         R_i = sum_j W_ji^2 R_j / stab(sum_i W_ji^2 + b_j^2)

Sum and average pooling (reduce_sum, reduce_window_sum with its division) take the
Epsilon rule with the composite's stabiliser (Zennit's Norm); max pooling passes relevance
to the arg-max (the gradient, as Zennit); a sum of two activations (a residual) splits R
in proportion to them (Norm); element-wise operations that carry no rule (ReLU and other
activations, a BatchNorm not merged, a scaling) pass relevance through unchanged (Pass);
reshapes, transposes, concatenations, slices and pads move it with the values. A primitive
with no rule (a product of two activations, attention's dot_general of two activations)
raises PropagationError naming the primitive and the layer, unless fallback="gradient".

Composites assign rules to layers (`Composite`): by kind (conv for convolutions, dense
for dot_general), by layer name (the equation's name stack: flax.linen's module path such
as "block/conv"; a key matches a name that equals it or ends with "/" + key), and a
"first" rule for the first layer, in call order, of the kinds `first_kinds`. Zennit's
composites by name (`composite(name, ...)`):

    EpsilonPlus            conv ZPlus, dense Epsilon
    EpsilonPlusFlat        EpsilonPlus, the first conv or dense layer Flat
    EpsilonAlpha2Beta1     conv AlphaBeta(2, 1), dense Epsilon
    EpsilonAlpha2Beta1Flat EpsilonAlpha2Beta1, the first conv or dense layer Flat
    EpsilonGammaBox        conv Gamma(0.25), dense Epsilon, the first conv ZBox(low, high)

The BatchNorm canonizer (canonize=True, the default): an inference-mode BatchNorm right
after a convolution or dense layer (only shape changes and its bias between) is affine
with constants, so the interpreter merges it into the layer, W' = W gamma / sqrt(var + eps)
and b' = (b - mean) gamma / sqrt(var + eps) + beta, as Zennit's SequentialMergeBatchNorm,
for every framework alike. canonize=False leaves the BatchNorm to Pass.
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp

from xai_jax.attribution.common import as_model_function, explanation_method
from xai_jax.attribution.propagation import (
    AFFINE_CONST,
    SELECT_MAX,
    SHAPE,
    UNARY,
    Layer,
    Rules,
    Step,
    propagate,
    unsupported,
)
from xai_jax.method import Method, method_factory


def stabilize(z: jax.Array, eps: float) -> jax.Array:
    """z + eps * sign(z), sign(0) = 1 (Zennit's stabilizer; Captum's too)."""
    return z + jnp.where(z >= 0, 1.0, -1.0).astype(z.dtype) * eps


def _ratio(r, z, eps):
    den = stabilize(z, eps)
    return jnp.where(den == 0, 0.0, r / jnp.where(den == 0, 1.0, den))


def _terms(layer: Layer, r, terms) -> tuple[list, list]:
    """(outputs, pullbacks) of the modified layer for each term (input, weight modifier, bias,
    gamma), as Zennit's BasicHook evaluates its input and parameter modifiers."""
    outs, pulls = [], []
    for u, weight, bias, gamma in terms:
        o, pull = jax.vjp(lambda v, w=weight, b=bias, g=gamma: layer.out(v, w, b, g), u)
        outs.append(o)
        pulls.append(pull)
    return outs, pulls


@dataclasses.dataclass(frozen=True)
class Epsilon:
    epsilon: float = 1e-6

    def __call__(self, layer: Layer, r):
        z, pull = jax.vjp(layer.out, layer.x)
        return layer.x * pull(_ratio(r, z, self.epsilon))[0]


@dataclasses.dataclass(frozen=True)
class AlphaBeta:
    alpha: float = 2.0
    beta: float = 1.0
    stabilizer: float = 1e-6

    def __post_init__(self):
        if self.alpha < 0 or self.beta < 0 or abs(self.alpha - self.beta - 1.0) > 1e-12:
            raise ValueError(f"AlphaBeta needs alpha, beta >= 0 with alpha - beta = 1, got alpha={self.alpha}, "
                             f"beta={self.beta}")

    def __call__(self, layer: Layer, r):
        xp, xn = jnp.maximum(layer.x, 0), jnp.minimum(layer.x, 0)
        outs, pulls = _terms(layer, r, [(xp, "pos", True, 0.0), (xn, "neg", False, 0.0),
                                        (xp, "neg", True, 0.0), (xn, "pos", False, 0.0)])
        sp = _ratio(r, outs[0] + outs[1], self.stabilizer)
        rel = xp * pulls[0](sp)[0] + xn * pulls[1](sp)[0]
        if self.beta == 0:
            return self.alpha * rel
        sn = _ratio(r, outs[2] + outs[3], self.stabilizer)
        return self.alpha * rel - self.beta * (xp * pulls[2](sn)[0] + xn * pulls[3](sn)[0])


@dataclasses.dataclass(frozen=True)
class ZPlus:
    stabilizer: float = 1e-6

    def __call__(self, layer: Layer, r):
        return AlphaBeta(1.0, 0.0, self.stabilizer)(layer, r)


@dataclasses.dataclass(frozen=True)
class Gamma:
    gamma: float = 0.25
    stabilizer: float = 1e-6

    def __call__(self, layer: Layer, r):
        g = self.gamma
        xp, xn = jnp.maximum(layer.x, 0), jnp.minimum(layer.x, 0)
        outs, pulls = _terms(layer, r, [(xp, "pos", True, g), (xn, "neg", False, g),
                                        (xp, "neg", True, g), (xn, "pos", False, g)])
        z = layer.out(layer.x)
        sp = jnp.where(z > 0, _ratio(r, outs[0] + outs[1], self.stabilizer), 0.0)
        sn = jnp.where(z < 0, _ratio(r, outs[2] + outs[3], self.stabilizer), 0.0)
        return (xp * pulls[0](sp)[0] + xn * pulls[1](sp)[0] + xp * pulls[2](sn)[0] + xn * pulls[3](sn)[0])


@dataclasses.dataclass(frozen=True)
class ZBox:
    low: Any
    high: Any
    stabilizer: float = 1e-6

    def __call__(self, layer: Layer, r):
        x = layer.x
        lo = jnp.broadcast_to(jnp.asarray(self.low, x.dtype), x.shape)
        hi = jnp.broadcast_to(jnp.asarray(self.high, x.dtype), x.shape)
        outs, pulls = _terms(layer, r, [(x, "id", True, 0.0), (lo, "pos", True, 0.0), (hi, "neg", True, 0.0)])
        s = _ratio(r, outs[0] - outs[1] - outs[2], self.stabilizer)
        return x * pulls[0](s)[0] - lo * pulls[1](s)[0] - hi * pulls[2](s)[0]


@dataclasses.dataclass(frozen=True)
class Flat:
    stabilizer: float = 1e-6

    def __call__(self, layer: Layer, r):
        z, pull = jax.vjp(lambda v: layer.out(v, "ones", False), jnp.ones_like(layer.x))
        return pull(_ratio(r, z, self.stabilizer))[0]


@dataclasses.dataclass(frozen=True)
class WSquare:
    stabilizer: float = 1e-6

    def __call__(self, layer: Layer, r):
        z, pull = jax.vjp(lambda v: layer.out(v, "sq", True), jnp.ones_like(layer.x))
        return pull(_ratio(r, z, self.stabilizer))[0]


RULE_TYPES = (Epsilon, ZPlus, AlphaBeta, Gamma, ZBox, Flat, WSquare)
RULE_NAMES: dict[str, Callable[[], Any]] = {
    "epsilon": Epsilon, "zero": lambda: Epsilon(0.0), "zplus": ZPlus, "alpha2beta1": lambda: AlphaBeta(2.0, 1.0),
    "alpha1beta0": lambda: AlphaBeta(1.0, 0.0), "gamma": Gamma, "flat": Flat, "wsquare": WSquare,
}


def _check_rule(rule: Any, name: str):
    if isinstance(rule, str):
        if rule == "zbox":
            raise ValueError(f"{name}='zbox' needs its bounds: pass xai_jax.lrp_rules.ZBox(low, high)")
        if rule not in RULE_NAMES:
            raise ValueError(f"{name} must be one of {sorted(RULE_NAMES)} or an LRP rule "
                             f"(xai_jax.lrp_rules.Epsilon(...), ...), got {rule!r}")
        return RULE_NAMES[rule]()
    if not isinstance(rule, RULE_TYPES):
        raise TypeError(f"{name} must be an LRP rule ({', '.join(t.__name__ for t in RULE_TYPES)}) or a rule "
                        f"name, got {type(rule).__name__} {rule!r}")
    return rule


KINDS = ("conv", "dense")


@dataclasses.dataclass(frozen=True)
class Composite:
    """Rules assigned to layers: `layers` by name first, then `first` for the first layer (in
    call order) of a kind in `first_kinds`, then by kind (`conv`, `dense`). `stabilizer`:
    the Norm rule's of sum and average pooling and residual sums."""

    conv: Any = Epsilon()
    dense: Any = Epsilon()
    first: Any = None
    first_kinds: tuple = KINDS
    layers: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    stabilizer: float = 1e-6

    def __post_init__(self):
        object.__setattr__(self, "conv", _check_rule(self.conv, "conv"))
        object.__setattr__(self, "dense", _check_rule(self.dense, "dense"))
        if self.first is not None:
            object.__setattr__(self, "first", _check_rule(self.first, "first"))
        if not isinstance(self.first_kinds, tuple) or not set(self.first_kinds) <= set(KINDS):
            raise ValueError(f"first_kinds must be a tuple of {KINDS}, got {self.first_kinds!r}")
        if not isinstance(self.layers, Mapping):
            raise TypeError(f"layers must be a dict layer name -> rule, got {type(self.layers).__name__}")
        object.__setattr__(self, "layers", {k: _check_rule(v, f"layers[{k!r}]") for k, v in self.layers.items()})

    def rule_for(self, layer: Layer):
        if layer.kind == "pool":
            return Epsilon(self.stabilizer)
        for key, rule in self.layers.items():
            if layer.name == key or layer.name.endswith("/" + key):
                return rule
        if self.first is not None:
            first = next((i for i, k in enumerate(layer.kinds) if k in self.first_kinds), None)
            if first == layer.index:
                return self.first
        return self.conv if layer.kind == "conv" else self.dense


def composite(name: str, *, epsilon: float = 1e-6, stabilizer: float = 1e-6, gamma: float = 0.25,
              low: Any = None, high: Any = None, layers: Mapping[str, Any] | None = None) -> Composite:
    """Zennit's composite `name` (module docstring) with its parameters (Zennit's defaults);
    EpsilonGammaBox needs low and high (the input's bounds, scalars or arrays shaped like x)."""
    layers = dict(layers or {})
    eps = Epsilon(epsilon)
    if name == "EpsilonGammaBox":
        if low is None or high is None:
            raise ValueError("composite 'EpsilonGammaBox' needs low= and high= (the input's bounds)")
        return Composite(conv=Gamma(gamma, stabilizer), dense=eps, first=ZBox(low, high, stabilizer),
                         first_kinds=("conv",), layers=layers, stabilizer=stabilizer)
    table = {
        "EpsilonPlus": (ZPlus(stabilizer), None),
        "EpsilonPlusFlat": (ZPlus(stabilizer), Flat(stabilizer)),
        "EpsilonAlpha2Beta1": (AlphaBeta(2.0, 1.0, stabilizer), None),
        "EpsilonAlpha2Beta1Flat": (AlphaBeta(2.0, 1.0, stabilizer), Flat(stabilizer)),
    }
    if name not in table:
        raise ValueError(f"composite must be one of {sorted([*table, 'EpsilonGammaBox'])}, got {name!r}")
    conv, first = table[name]
    return Composite(conv=conv, dense=eps, first=first, layers=layers, stabilizer=stabilizer)


class LRPRules(Rules):
    """Relevance as the cotangent: linear layers by the composite, the rest as the module docstring."""

    fuse = True

    def __init__(self, comp: Composite, canonize: bool):
        self.composite, self.canonize = comp, canonize

    def layer(self, layer: Layer, r):
        return self.composite.rule_for(layer)(layer, r)

    def backward(self, step: Step, cts: list) -> list:
        p, n = step.primitive, sum(step.live)
        if p in SHAPE or p in SELECT_MAX:
            return step.vjp(cts)
        shaped = all(tuple(v.shape) == tuple(step.outvals[0].shape)
                     for v, t in zip(step.invals, step.live) if t)
        if p in ("add", "sub", "add_any") and n == 2 and shaped:
            a, b = step.invals
            r = _ratio(cts[0], step.outvals[0], self.composite.stabilizer)
            return [a * r, (-b if p == "sub" else b) * r]
        if n == 1 and shaped and p in AFFINE_CONST + UNARY:
            out: list = [None] * len(step.invals)
            out[step.live.index(True)] = cts[0]
            return out
        unsupported(step, "LRP has no rule for this primitive (e.g. a product of two activations)")


def _composite_of(rule, comp) -> Composite:
    if rule is not None and comp is not None:
        raise TypeError("lrp takes rule= (one rule for every layer) or composite=, not both")
    if comp is None:
        r = _check_rule("epsilon" if rule is None else rule, "rule")
        return Composite(conv=r, dense=r)
    if isinstance(comp, str):
        return composite(comp)
    if not isinstance(comp, Composite):
        raise TypeError(f"composite must be a Composite or a Zennit composite name, got {type(comp).__name__}")
    return comp


@method_factory()
def lrp(f: Callable[[jax.Array], jax.Array], *, rule: Any = None, composite: Any = None, canonize: bool = True,
        fallback: str | None = None, precision: str | None = None) -> Method:
    """Layer-wise Relevance Propagation (module docstring). Returns lrp(x, target) -> the
    relevance of each input value, shaped like x; sum R ~ F_target(x) (exactly for LRP-0 on a
    bias-free ReLU network).

    f: a function x -> class scores of one unbatched x, or any adapted model.
    rule: one rule for every conv and dense layer: an `lrp_rules` rule or a name ("epsilon",
      "zero", "zplus", "alpha2beta1", "alpha1beta0", "gamma", "flat", "wsquare"); default
      Epsilon(1e-6).
    composite: instead of rule, a Composite or a Zennit composite name ("EpsilonPlus",
      "EpsilonPlusFlat", "EpsilonAlpha2Beta1", "EpsilonAlpha2Beta1Flat"; for
      "EpsilonGammaBox" pass lrp_rules.composite("EpsilonGammaBox", low=..., high=...)).
    canonize: merge a BatchNorm into the layer before it (module docstring).
    fallback: None (a primitive without a rule raises) or "gradient".
    """
    f = as_model_function(f)
    comp = _composite_of(rule, composite)
    if not isinstance(canonize, bool):
        raise TypeError(f"canonize must be a bool, got {type(canonize).__name__} {canonize!r}")
    if fallback not in (None, "gradient"):
        raise ValueError(f"fallback must be None (an unhandled primitive is an error) or 'gradient', got {fallback!r}")
    rules = LRPRules(comp, canonize)

    @jax.jit  # one compiled pass per input shape (inlined under the caller's jit)
    def fn(x, target):
        def start(s):
            return jnp.zeros_like(s).at[target].set(s[target])
        rel, scores = propagate(f, x, start, rules, fallback=fallback)
        return rel, jnp.isfinite(scores).all()

    return explanation_method(fn, f, name="lrp", reports_scores=True, precision=precision)


lrp_rules = types.SimpleNamespace(
    Epsilon=Epsilon, ZPlus=ZPlus, AlphaBeta=AlphaBeta, Gamma=Gamma, ZBox=ZBox, Flat=Flat, WSquare=WSquare,
    Composite=Composite, composite=composite, stabilize=stabilize)
