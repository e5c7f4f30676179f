"""Guided IG, Blur IG and XRAI against PAIR saliency 0.2.1, and their speed.

PAIR is framework-agnostic: its call_model_function here calls our JAX gradient of the
same model, so no transplant is needed. NumPy 2 removed np.quantile's `interpolation=`,
which PAIR 0.2.1's Guided IG passes; a shim maps it to `method=` while PAIR runs.

Cases (random weights, fixed seeds; tests/methods/test_pair_reference.py rebuilds them):
- Guided IG on the study CNN, 1-D MNIST-1D-shaped inputs (3), 200 steps, fraction 0.25,
  max_dist 0.02, baseline 0: agreement relative to max |attribution|. PAIR runs in float64
  on float32 gradients; ours in float32.
- Blur IG on a VGG at 24 x 24 (2 images), max_sigma 50, 100 steps, grad_step 0.01, with
  x64 enabled on both sides (model and inputs in float64). In float32 the two differ by
  up to ~3e-3 of the maximum: strongly blurred images are nearly flat, so the VGG's
  max-pool windows hold near-ties that float32 rounding of the blurred points resolves
  either way (a float64 reference moves as much when fed our float32 blurred points).
- XRAI on a VGG at 32 x 32 (2 images): the same Felzenszwalb regions on both sides
  (checked equal), and the same base attribution (our IG, 64 steps), so that the greedy
  region selection is what is compared: heatmaps and segment ranks.
Speed (one run, same machine): 100 MNIST-1D inputs (Guided IG) and 4 VGG images at 64 px
(Guided IG, Blur IG, XRAI with its IG), PAIR at its defaults (one gradient call per
step, each our jitted JAX gradient) against our jit(vmap) (XRAI: per image, segmentation
included on both sides; PAIR's IG uses 2 baselines x 100 steps, ours 1 x 200).

    .venv-peers/bin/pip install saliency==0.2.1 scikit-image==0.26.0   # the peers venv (compare_metrics_peers.py)
    .venv-peers/bin/python experiments/compare_pair_saliency.py        # writes the reference
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from peers import cli

import xai_jax as xj
from xai_jax.study.models import mnist1d_cnn, vgg7

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "experiments" / "peers" / "reference_pair.json"
GUIDED = dict(steps=200, fraction=0.25, max_dist=0.02)
BLUR = dict(max_sigma=50.0, steps=100, grad_step=0.01)
XRAI_IG_STEPS = 64


def setup(kind: str, n: int | None = None, size: int | None = None, seed: int = 0, x64: bool = False):
    """(f, xs, targets) of a case: fixed seeds, so the tests rebuild them. x64: params and
    inputs in float64 (call it inside jax.enable_x64(True))."""
    rng = np.random.default_rng(seed)
    dtype = np.float64 if x64 else np.float32
    if kind == "1d":
        model, shape, n, classes = mnist1d_cnn("study"), (40, 1), n or 3, 10
        xs = rng.normal(size=(n, *shape))
    else:
        model, shape, n, classes = vgg7("study"), (size, size, 3), n or 2, 8
        xs = rng.uniform(size=(n, *shape))
    params = model.init(jax.random.key(0), jnp.zeros((1, *shape)))["params"]
    params = jax.tree.map(lambda p: jnp.asarray(p, dtype), params)
    return xj.model_fn(model, params), xs.astype(dtype), np.arange(n) % classes


def ours_guided(f, xs, ts):
    return np.asarray(jax.jit(jax.vmap(xj.guided_ig(f, **GUIDED, precision="highest")))(xs, ts))


def ours_blur(f, xs, ts):
    return np.asarray(jax.jit(jax.vmap(xj.blur_ig(f, **BLUR, precision="highest")))(xs, ts))


def base_ig(f):
    return xj.integrated_gradients(f, steps=XRAI_IG_STEPS, precision="highest")


@contextlib.contextmanager
def quantile_shim():
    """np.quantile(..., interpolation=) -> method= (removed in NumPy 2), while PAIR runs."""
    original = np.quantile

    def quantile(*args, interpolation=None, **kwargs):
        if interpolation is not None:
            kwargs["method"] = interpolation
        return original(*args, **kwargs)

    np.quantile = quantile
    try:
        yield
    finally:
        np.quantile = original


def pair_call(f, target):
    """PAIR's call_model_function: our JAX gradient of the target's logit."""
    import saliency.core as saliency
    grad = jax.jit(jax.vmap(jax.grad(lambda x: f(x)[target])))

    def call(x_batch, call_model_args=None, expected_keys=None):
        dtype = jnp.float64 if jax.config.jax_enable_x64 else jnp.float32
        return {saliency.base.INPUT_OUTPUT_GRADIENTS: np.asarray(grad(jnp.asarray(x_batch, dtype)))}

    return call


def pair_guided(f, xs, ts):
    import saliency.core as saliency
    with quantile_shim():
        return np.stack([saliency.GuidedIG().GetMask(x, pair_call(f, int(t)), x_steps=GUIDED["steps"],
                                                     x_baseline=np.zeros_like(x), fraction=GUIDED["fraction"],
                                                     max_dist=GUIDED["max_dist"]) for x, t in zip(xs, ts)])


def pair_blur(f, xs, ts):
    import saliency.core as saliency
    # a float64 image, so that PAIR blurs in float64 (scipy keeps the input's dtype), as it
    # computes Guided IG: its float32 finite differences in sigma are off by up to ~1e-3
    return np.stack([saliency.BlurIG().GetMask(x.astype(np.float64), pair_call(f, int(t)), max_sigma=BLUR["max_sigma"],
                                               steps=BLUR["steps"], grad_step=BLUR["grad_step"])
                     for x, t in zip(xs, ts)])


def pair_xrai(xs, attrs, segments):
    import saliency.core as saliency
    out = []
    for x, attr, segs in zip(xs, attrs, segments):
        params = saliency.XRAIParameters()
        params.return_xrai_segments = True
        res = saliency.XRAI().GetMaskWithDetails(x, None, segments=list(segs), base_attribution=attr,
                                                extra_parameters=params)
        out.append((res.attribution_mask, res.segments))
    return out


def rel(a, b) -> float:
    return float(np.abs(np.asarray(a, np.float64) - b).max() / np.abs(b).max())


def speed(quick: bool) -> list[dict]:
    import saliency.core as saliency
    rows = []
    n1 = 10 if quick else 100
    f, xs, ts = setup("1d", n=n1, seed=1)
    gig = jax.jit(jax.vmap(xj.guided_ig(f, **GUIDED)))
    jax.block_until_ready(gig(xs, ts))
    t_ours = cli.best_time(lambda: jax.block_until_ready(gig(xs, ts)), 3)
    t_pair = cli.best_time(lambda: pair_guided(f, xs, ts))
    rows.append({"job": f"Guided IG, MNIST-1D study CNN, {n1} inputs", "xai_jax_s": t_ours, "pair_s": t_pair})
    size, n2 = (32, 2) if quick else (64, 4)
    f, xs, ts = setup("2d", n=n2, size=size, seed=2)
    gig = jax.jit(jax.vmap(xj.guided_ig(f, **GUIDED)))
    jax.block_until_ready(gig(xs, ts))
    rows.append({"job": f"Guided IG, VGG {size} px, {n2} images",
                 "xai_jax_s": cli.best_time(lambda: jax.block_until_ready(gig(xs, ts))),
                 "pair_s": cli.best_time(lambda: pair_guided(f, xs, ts))})
    blur = jax.jit(jax.vmap(xj.blur_ig(f, **BLUR)))
    jax.block_until_ready(blur(xs, ts))
    rows.append({"job": f"Blur IG, VGG {size} px, {n2} images",
                 "xai_jax_s": cli.best_time(lambda: jax.block_until_ready(blur(xs, ts))),
                 "pair_s": cli.best_time(lambda: pair_blur(f, xs, ts))})
    ours_x = xj.xrai(xj.integrated_gradients(f, steps=200))  # 200 gradients, as PAIR's 2 baselines x 100
    [ours_x(x, t) for x, t in zip(xs[:1], ts[:1])]  # compile once

    def pair_x():
        for x, t in zip(xs, ts):
            saliency.XRAI().GetMask(x, pair_call(f, int(t)))

    rows.append({"job": f"XRAI with its IG (200 gradients per image on both sides), VGG {size} px, {n2} images",
                 "xai_jax_s": cli.best_time(lambda: [ours_x(x, t) for x, t in zip(xs, ts)]),
                 "pair_s": cli.best_time(pair_x)})
    for r in rows:
        r["pair_over_xai_jax"] = r["pair_s"] / r["xai_jax_s"]
        print(f"  {r['job']}: xai_jax {r['xai_jax_s']:.3f} s, PAIR {r['pair_s']:.2f} s: "
              f"{r['pair_over_xai_jax']:.1f}x")
    return rows


def main(argv=None) -> int:
    args = cli.parse(__doc__, ROOT / "results" / "compare_pair_saliency", argv,
                     "the same cases, smaller speed rows; writes only to --out")
    if cli.missing(("saliency", "skimage"), args.out,
                   "pip install saliency==0.2.1 scikit-image==0.26.0 into the peers venv"):
        return 0
    result = {"about": __doc__.splitlines()[0], "saliency": importlib.metadata.version("saliency"),
              "backend": jax.default_backend(), "cases": {}}

    f, xs, ts = setup("1d")
    mine, theirs = ours_guided(f, xs, ts), pair_guided(f, xs, ts)
    result["cases"]["guided_ig_1d"] = {"pair": theirs.tolist(), "max_rel_diff": rel(mine, theirs)}
    print(f"  Guided IG 1-D: max |ours - PAIR| / max |PAIR| = {rel(mine, theirs):.2e}")

    f, xs, ts = setup("2d", size=24)
    rel32 = rel(ours_blur(f, xs, ts), pair_blur(f, xs, ts))
    with jax.enable_x64(True):
        f, xs, ts = setup("2d", size=24, x64=True)
        mine, theirs = ours_blur(f, xs, ts), pair_blur(f, xs, ts)
    result["cases"]["blur_ig_2d"] = {"pair_x64": theirs.tolist(), "max_rel_diff_x64": rel(mine, theirs),
                                     "max_rel_diff_float32": rel32}
    print(f"  Blur IG 2-D: max |ours - PAIR| / max |PAIR| = {rel(mine, theirs):.2e} with x64 enabled "
          f"(float32 model: {rel32:.2e}; max-pool near-ties on blurred images flip gradients)")

    import saliency.core.xrai as pair_xrai_module
    f, xs, ts = setup("2d", size=32)
    ig = base_ig(f)
    attrs = [np.asarray(ig(x, t)) for x, t in zip(xs, ts)]
    segments = [xj.felzenszwalb_segments(x) for x in xs]
    same_segments = all(np.array_equal(s, np.stack(pair_xrai_module._get_segments_felzenszwalb(x)))
                        for s, x in zip(segments, xs))
    theirs = pair_xrai(xs, attrs, segments)
    mine = [xj.xrai(ig, segments=s, return_ranks=True)(x, t) for s, x, t in zip(segments, xs, ts)]
    heat_rel = max(rel(m[0], t[0]) for m, t in zip(mine, theirs))
    ranks_equal = all(np.array_equal(m[1], t[1]) for m, t in zip(mine, theirs))
    result["cases"]["xrai_2d"] = {"pair_heatmap": [t[0].tolist() for t in theirs],
                                  "pair_ranks": [t[1].tolist() for t in theirs],
                                  "same_segments": same_segments, "max_rel_diff_heatmap": heat_rel,
                                  "ranks_equal": ranks_equal}
    print(f"  XRAI 2-D: segments identical {same_segments}; heatmap max rel diff {heat_rel:.2e}; "
          f"segment ranks identical {ranks_equal}")

    result["speed"] = speed(args.quick)
    cli.write(result, args, REFERENCE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
