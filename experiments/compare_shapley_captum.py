"""The perturbation, Shapley and layer/neuron methods against Captum 0.9, and their speed.

Same weights on both sides (experiments/peers/transplant.py): the study CNN on 40-sample
MNIST-1D-shaped signals (random weights, fixed seeds) and, for feature ablation, a VGG on
20 x 20 images. Where Captum draws random numbers it is fed OUR draws (the same key for
every input, so that a batch shares them): Shapley value sampling's orders through its
`permutation_generator`, KernelSHAP's coalitions through `kernel_shap_perturb_generator`,
LIME's through `perturb_func`, FeaturePermutation's batch permutations through `perm_func`.
KernelSHAP differs by construction: Captum weights the empty and full coalitions 10^6,
we impose them exactly. LIME uses Captum's `SkLearnLinearRegression` and cosine kernel.
Layer and neuron methods read the second convolution after its ReLU (a ReLU module on the
torch side), with Captum's method="riemann_trapezoid" (our rule="trapezoid") and
"gausslegendre" ("gauss_legendre"). Captum's riemann_trapezoid weights are 1/n with the two
ends halved, which sum to (n - 1)/n, not 1 (the trapezoid rule on n nodes has 1/(n - 1)):
its IG-type maps are (n - 1)/n of the integral's estimate. Those cases compare ours times
(n - 1)/n (`captum_scale`), and the raw difference (1/n = 2e-2 for 50 steps) is reported.

Maps are compared relative to the largest |Captum attribution| of each case. The full run
writes the Captum values to experiments/peers/reference_shapley.json;
tests/methods/test_shapley_reference.py checks ours against them without Captum.

--speed: on 1,000 MNIST-1D test signals (CPU), KernelSHAP and LIME against Captum with the
same number of model evaluations (Captum explains one input at a time, its perturbations
batched: perturbations_per_eval = all of them), and feature ablation, permutation and
Shapley sampling against our own forward floor (the same number of plain forward passes,
in the same batches, jit(vmap(f))), with Captum's time reported too. Writes
docs/results/peer_speed_shapley.md.

    .venv-peers/bin/python experiments/compare_shapley_captum.py [--speed | --speed-only] [--data-dir data]
    (the peers venv: see experiments/compare_metrics_peers.py)
"""

from __future__ import annotations

import importlib.metadata
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from peers import cli

import xai_jax as xj
from xai_jax.attribution import shapley as S
from xai_jax.study.models import mnist1d_cnn, vgg7

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "experiments" / "peers" / "reference_shapley.json"
KEY = jax.random.key(7)
SEGMENTS = xj.patch_mask((40,), 5)  # 8 features of 5 samples
LAYER = "conv1d_1"
NEURON = (17, 3)  # (position, channel) in our (L, C) layout; Captum's (C, L) is (3, 17)

# name, kind, method, options; tolerances (max |ours - Captum| / max |Captum|) in TOLERANCE
CASES = [
    ("feature ablation, every sample", "1d", "feature_ablation", {}),
    ("feature ablation, 8 segments, baseline 0.5", "1d", "feature_ablation", {"mask": "segments", "baseline": 0.5}),
    ("feature ablation, 2-D patches 5x5", "2d", "feature_ablation", {"mask": "patches"}),
    ("exact Shapley values, 7 segments", "1d", "shapley_values", {"mask": "segments7"}),
    ("Shapley value sampling, same orders", "1d", "shapley_sampling", {"mask": "segments", "n_samples": 6}),
    ("KernelSHAP, same coalitions", "1d", "kernel_shap", {"mask": "segments", "n_samples": 60}),
    ("LIME, same coalitions, linear regression", "1d", "lime", {"mask": "segments", "n_samples": 60}),
    ("feature permutation (batch), same permutations", "1d", "feature_permutation_batch", {"mask": "segments"}),
    ("layer IG, riemann_trapezoid", "1d", "layer_integrated_gradients", {"rule": "trapezoid"}),
    ("layer IG, gausslegendre", "1d", "layer_integrated_gradients", {"rule": "gauss_legendre"}),
    ("layer conductance, riemann_trapezoid", "1d", "layer_conductance", {"rule": "trapezoid"}),
    ("layer conductance, gausslegendre", "1d", "layer_conductance", {"rule": "gauss_legendre"}),
    ("layer gradient x activation", "1d", "layer_gradient_x_activation", {}),
    ("layer activation", "1d", "layer_activation", {}),
    ("neuron gradient", "1d", "neuron_gradient", {}),
    ("neuron IG, riemann_trapezoid", "1d", "neuron_integrated_gradients", {"rule": "trapezoid"}),
]
TOLERANCE = {"feature_ablation": 1e-5, "kernel_shap": 1e-4}
DEFAULT_TOLERANCE = 1e-4
STEPS = 50


def setup(kind: str):
    """(model, params, xs, targets) of a case: fixed seeds, so the tests rebuild them."""
    rng = np.random.default_rng(0)
    if kind == "1d":
        model = mnist1d_cnn("study")
        params = model.init(jax.random.key(0), jnp.zeros((1, 40, 1)))["params"]
        return model, params, rng.normal(size=(3, 40, 1)).astype(np.float32), np.array([1, 4, 7])
    model = vgg7("study")
    params = model.init(jax.random.key(0), jnp.zeros((1, 20, 20, 3)))["params"]
    return model, params, rng.uniform(size=(2, 20, 20, 3)).astype(np.float32), np.array([0, 3])


def _mask(kind: str, opts: dict):
    if opts.get("mask") == "segments":
        return SEGMENTS
    if opts.get("mask") == "segments7":  # Captum's ShapleyValues runs all 7! orders: 8! is slow on 2 cores
        return xj.patch_mask((40,), 6)
    if opts.get("mask") == "patches":
        return xj.patch_mask((20, 20), 5)
    return None


def _draws(method: str, opts: dict) -> np.ndarray:
    """Our draws for the case: the same for every input (key KEY)."""
    if method == "shapley_sampling":
        return np.asarray(S.sample_permutations(KEY, opts["n_samples"], 8))
    if method == "kernel_shap":
        return np.asarray(S.sample_kernel_coalitions(KEY, opts["n_samples"], 8))
    if method == "lime":
        return np.asarray(S.sample_lime_coalitions(KEY, opts["n_samples"], 8))
    if method == "feature_permutation_batch":
        return np.asarray(S.batch_permutations(KEY, 8, 3))
    raise ValueError(method)


def ours(kind: str, method: str, opts: dict) -> np.ndarray:
    """Our maps for a case (NumPy, our layout)."""
    model, params, xs, ts = setup(kind)
    xs, ts = jnp.asarray(xs), jnp.asarray(ts)
    f = xj.model_fn(model, params)
    m = xj.Model(model, params)
    mask, hp = _mask(kind, opts), dict(precision="highest")
    if method == "feature_ablation":
        fn = xj.feature_ablation(f, feature_mask=mask, baseline=opts.get("baseline", 0.0), **hp)
    elif method == "shapley_values":
        fn = xj.shapley_values(f, feature_mask=mask, **hp)
    elif method == "shapley_sampling":
        fn = xj.shapley_sampling(f, feature_mask=mask, n_samples=opts["n_samples"], **hp)
    elif method == "kernel_shap":
        fn = xj.kernel_shap(f, feature_mask=mask, n_samples=opts["n_samples"], **hp)
    elif method == "lime":
        fn = xj.lime(f, feature_mask=mask, n_samples=opts["n_samples"], **hp)
    elif method == "feature_permutation_batch":
        with jax.default_matmul_precision("highest"):
            return np.asarray(xj.feature_permutation_batch(f, xs, ts, permutations=_draws(method, opts),
                                                           feature_mask=mask))
    elif method in ("layer_integrated_gradients", "layer_conductance"):
        fn = getattr(xj, method)(m, layer=LAYER, steps=STEPS, rule=opts["rule"], **hp)
    elif method in ("layer_gradient_x_activation", "layer_activation"):
        fn = getattr(xj, method)(m, layer=LAYER, **hp)
    elif method == "neuron_gradient":
        fn = xj.neuron_gradient(m, layer=LAYER, neuron=NEURON, **hp)
    elif method == "neuron_integrated_gradients":
        fn = xj.neuron_integrated_gradients(m, layer=LAYER, neuron=NEURON, steps=STEPS, rule=opts["rule"], **hp)
    else:
        raise ValueError(method)
    if fn.keyed:
        keys = jnp.stack([KEY] * len(xs))
        return np.asarray(jax.jit(jax.vmap(fn))(xs, ts, keys))
    return np.asarray(jax.jit(jax.vmap(fn))(xs, ts))


# ----------------------------------------------------------------------------- Captum


def _relu_twin(twin):
    """The MNIST-1D twin with each convolution's ReLU as a module (relu0, relu1, ...), so that
    Captum's layer methods can read a convolution after its ReLU, as our ConvReLU layers are."""
    import torch
    from peers import transplant

    class Layered(torch.nn.Module):
        def __init__(self):
            super().__init__()
            convs = [layer for _, layer in transplant.weight_layers(twin)[:-1]]
            self.convs = torch.nn.ModuleList(convs)
            self.relus = torch.nn.ModuleList([torch.nn.ReLU() for _ in convs])
            self.dense = twin.dense

        def forward(self, x):
            for conv, relu in zip(self.convs, self.relus):
                x = relu(conv(x))
            return self.dense(x.transpose(1, 2).flatten(1))

    return Layered().eval()


def captum_maps(kind: str, method: str, opts: dict) -> np.ndarray:
    """Captum's maps for a case, in our layout (channels last)."""
    import captum.attr as ca
    import torch
    from captum._utils.models.linear_model import SkLearnLinearRegression
    from captum.attr._core.lime import get_exp_kernel_similarity_function
    from peers import transplant

    model, params, xs, ts = setup(kind)
    twin = transplant.from_flax(model, params)
    x = torch.as_tensor(transplant.to_channels_first(xs))
    t = torch.as_tensor(ts)
    mask = _mask(kind, opts)
    fmask = None if mask is None else torch.as_tensor(mask, dtype=torch.long)[None, None]  # (1, 1, *spatial)
    n_steps_kw = {"n_steps": STEPS, "method": {"trapezoid": "riemann_trapezoid",
                                               "gauss_legendre": "gausslegendre"}.get(opts.get("rule"), "")}
    layered = _relu_twin(twin) if kind == "1d" else None
    layer = layered.relus[1] if layered is not None else None
    zeros = torch.zeros_like(x)
    if method == "feature_ablation":
        out = ca.FeatureAblation(twin).attribute(x, baselines=opts.get("baseline", 0.0), target=t, feature_mask=fmask)
    elif method == "shapley_values":
        out = ca.ShapleyValues(twin).attribute(x, baselines=0.0, target=t, feature_mask=fmask,
                                               perturbations_per_eval=64)
    elif method == "shapley_sampling":
        svs = ca.ShapleyValueSampling(twin)
        orders = [list(map(int, p)) for p in _draws(method, opts)]
        svs.permutation_generator = lambda n, s: iter(orders)
        out = svs.attribute(x, baselines=0.0, target=t, feature_mask=fmask, n_samples=len(orders))
    elif method == "kernel_shap":
        draws = _draws(method, opts)

        class FedKernelShap(ca.KernelShap):
            def kernel_shap_perturb_generator(self, original_inp, **kwargs):
                yield torch.ones(1, 8, dtype=torch.long)
                yield torch.zeros(1, 8, dtype=torch.long)
                for z in draws:
                    yield torch.as_tensor(z[None], dtype=torch.long)

        out = FedKernelShap(twin).attribute(x, baselines=0.0, target=t, feature_mask=fmask,
                                            n_samples=len(draws) + 2, perturbations_per_eval=len(draws) + 2)
    elif method == "lime":
        draws = _draws(method, opts)

        def fed(original_inp, **kwargs):
            for z in draws:
                yield torch.as_tensor(z[None], dtype=torch.long)

        lime = ca.Lime(twin, interpretable_model=SkLearnLinearRegression(),
                       similarity_func=get_exp_kernel_similarity_function("cosine", 1.0),
                       perturb_func=fed)
        out = lime.attribute(x, baselines=0.0, target=t, feature_mask=fmask, n_samples=len(draws),
                             perturbations_per_eval=len(draws))
    elif method == "feature_permutation_batch":
        perms = [torch.as_tensor(p, dtype=torch.long) for p in _draws(method, opts)]
        calls = [0]

        def perm_func(inp, feature_mask):
            p = perms[calls[0]]
            calls[0] += 1
            return inp[p] * feature_mask.to(inp.dtype) + inp * feature_mask.bitwise_not().to(inp.dtype)

        out = ca.FeaturePermutation(twin, perm_func=perm_func).attribute(x, target=t, feature_mask=fmask)
    elif method == "layer_integrated_gradients":
        out = ca.LayerIntegratedGradients(layered, layer).attribute(x, baselines=zeros, target=t, **n_steps_kw)
    elif method == "layer_conductance":
        out = ca.LayerConductance(layered, layer).attribute(x, baselines=zeros, target=t, **n_steps_kw)
    elif method == "layer_gradient_x_activation":
        out = ca.LayerGradientXActivation(layered, layer).attribute(x, target=t)
    elif method == "layer_activation":
        out = ca.LayerActivation(layered, layer).attribute(x)
    elif method == "neuron_gradient":
        out = ca.NeuronGradient(layered, layer).attribute(x, neuron_selector=NEURON[::-1])
    elif method == "neuron_integrated_gradients":
        out = ca.NeuronIntegratedGradients(layered, layer).attribute(x, neuron_selector=NEURON[::-1],
                                                                     baselines=zeros, **n_steps_kw)
    else:
        raise ValueError(method)
    return transplant.to_channels_last(out.detach().numpy())


def captum_scale(method: str, opts: dict) -> float:
    """What Captum's maps are of ours by construction: (n - 1)/n for IG-type maps with
    riemann_trapezoid (its step sizes sum to (n - 1)/n), else 1."""
    integrals = ("layer_integrated_gradients", "neuron_integrated_gradients")
    return (STEPS - 1) / STEPS if method in integrals and opts.get("rule") == "trapezoid" else 1.0


def compare() -> list[dict]:
    cases = []
    for name, kind, method, opts in CASES:
        mine, theirs = ours(kind, method, opts), captum_maps(kind, method, opts)
        assert mine.shape == theirs.shape, (name, mine.shape, theirs.shape)
        scale = captum_scale(method, opts)
        raw = float(np.abs(mine - theirs).max() / np.abs(theirs).max())
        rel = float(np.abs(scale * mine - theirs).max() / np.abs(theirs).max())
        tol = TOLERANCE.get(method, DEFAULT_TOLERANCE)
        cases.append({"name": name, "kind": kind, "method": method, "options": opts, "tolerance": tol,
                      "captum_scale": scale, "captum": theirs.tolist(), "max_rel_diff": rel,
                      "max_rel_diff_unscaled": raw})
        note = f" (unscaled {raw:.2e}: Captum's trapezoid weights sum to {scale:g})" if scale != 1.0 else ""
        print(f"  {name}: max |ours - Captum| / max |Captum| = {rel:.2e} (tolerance {tol:g}){note}")
    return cases


# ----------------------------------------------------------------------------- speed


def _repeated(fn, args, calls):
    jax.block_until_ready(fn(*args))  # compile first

    def run():
        for _ in range(calls):
            out = fn(*args)
        jax.block_until_ready(out)
    return run


class _Rows(dict):
    """The speed rows, each printed with its ratios as soon as it is measured."""

    def __setitem__(self, name, row):
        if "floor_s" in row:
            row["ours_over_floor"] = row["ours_s"] / row["floor_s"]
        row["captum_over_ours"] = row["captum_s"] / row["ours_s"]
        floor = f", floor {row['floor_s']:.3f} s, ours / floor {row['ours_over_floor']:.2f}" if "floor_s" in row \
            else ""
        print(f"  speed {name}: ours {row['ours_s']:.3f} s, Captum {row['captum_s']:.2f} s "
              f"(Captum / ours {row['captum_over_ours']:.1f}x){floor}", flush=True)
        super().__setitem__(name, row)


def speed(n: int, data_dir, batch: int = 100, repeats: int = 3) -> dict:
    """Seconds for n MNIST-1D inputs: ours (jit(vmap(method)) in batches), our forward floor
    (the same forwards, jit(vmap(f)) in the same batches) and Captum (the same evaluations)."""
    import captum.attr as ca
    import torch
    from captum._utils.models.linear_model import SkLearnLinearRegression
    from peers import transplant

    from xai_jax.study.data.mnist1d import load_mnist1d

    data = load_mnist1d(cache_dir=data_dir)
    xs = np.ascontiguousarray(np.resize(data.x_test, (n, 40, 1)), np.float32)
    model = mnist1d_cnn("study")
    params = model.init(jax.random.key(0), jnp.zeros((1, 40, 1)))["params"]
    f = xj.model_fn(model, params)
    ts = np.asarray(jax.jit(jax.vmap(f))(xs)).argmax(1).astype(np.int32)
    twin = transplant.from_flax(model, params)
    x_t, t_t = torch.as_tensor(transplant.to_channels_first(xs)), torch.as_tensor(ts, dtype=torch.long)
    segments = xj.patch_mask((40,), 2)  # 20 features for the surrogates and sampling
    fmask = torch.as_tensor(segments, dtype=torch.long)[None, None]
    n_feat, n_samples, orders = 20, 200, 10
    keys = jax.random.split(KEY, batch)
    xb, tb = jnp.asarray(xs[:batch]), jnp.asarray(ts[:batch])
    calls = -(-n // batch)

    def ours_runner(method, keyed):
        fn = jax.jit(jax.vmap(method))
        return _repeated(fn, (xb, tb, keys) if keyed else (xb, tb), calls)

    def floor_runner(per_input):
        chunk = jnp.asarray(np.repeat(xs[:batch], per_input, axis=0))
        return _repeated(jax.jit(jax.vmap(f)), (chunk,), calls)

    def best(run):
        return min(cli.best_time(run) for _ in range(repeats))

    def timed_captum(fn):
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0

    rows = _Rows()
    # the surrogates: ours against Captum, n_samples coalitions (+ the two end points for KernelSHAP)
    ks = xj.kernel_shap(f, n_samples=n_samples, feature_mask=segments)
    lime = xj.lime(f, n_samples=n_samples, feature_mask=segments)
    rows["kernel_shap"] = {"evaluations_per_input": n_samples + 2, "ours_s": best(ours_runner(ks, True)),
                           "captum_s": timed_captum(lambda: ca.KernelShap(twin).attribute(
                               x_t, baselines=0.0, target=t_t, feature_mask=fmask, n_samples=n_samples + 2,
                               perturbations_per_eval=n_samples + 2))}
    rows["lime"] = {"evaluations_per_input": n_samples, "ours_s": best(ours_runner(lime, True)),
                    "captum_s": timed_captum(lambda: ca.Lime(twin, interpretable_model=SkLearnLinearRegression())
                                             .attribute(x_t, baselines=0.0, target=t_t, feature_mask=fmask,
                                                        n_samples=n_samples, perturbations_per_eval=n_samples))}
    # the batched ones: ours against our forward floor; Captum reported
    abl = xj.feature_ablation(f)  # every sample: 40 features
    svs = xj.shapley_sampling(f, n_samples=orders, feature_mask=segments)
    rows["feature_ablation"] = {"evaluations_per_input": 41, "ours_s": best(ours_runner(abl, False)),
                                "floor_s": best(floor_runner(41)),
                                "captum_s": timed_captum(lambda: ca.FeatureAblation(twin).attribute(
                                    x_t, baselines=0.0, target=t_t, perturbations_per_eval=41))}
    rows["shapley_sampling"] = {"evaluations_per_input": orders * (n_feat - 1) + 2,
                                "ours_s": best(ours_runner(svs, True)),
                                "floor_s": best(floor_runner(orders * (n_feat - 1) + 2)),
                                "captum_s": timed_captum(lambda: ca.ShapleyValueSampling(twin).attribute(
                                    x_t, baselines=0.0, target=t_t, feature_mask=fmask, n_samples=orders,
                                    perturbations_per_eval=n_feat))}
    # permutation: a batch-level method; B = batch rows per call, n_feat permuted copies of each + the batch itself
    perm_fn = jax.jit(lambda xb, tb, k: xj.feature_permutation_batch(f, xb, tb, key=k, feature_mask=segments))
    perm_runner = _repeated(perm_fn, (xb, tb, KEY), calls)
    rows["feature_permutation"] = {"evaluations_per_input": n_feat + 1, "ours_s": best(perm_runner),
                                   "floor_s": best(floor_runner(n_feat + 1)),
                                   "captum_s": timed_captum(lambda: ca.FeaturePermutation(twin).attribute(
                                       x_t, target=t_t, feature_mask=fmask, perturbations_per_eval=n_feat))}
    return {"n_inputs": n, "batch": batch, "features": {"surrogates_and_sampling": n_feat, "ablation": 40},
            "rows": rows}


def write_speed(result: dict, path: Path) -> None:
    rows = result["rows"]
    lines = [
        "# Perturbation and Shapley methods: speed against Captum and our forward floor",
        "",
        f"{result['n_inputs']} MNIST-1D signals (40 x 1), the study CNN, CPU, one run of "
        f"`experiments/compare_shapley_captum.py --speed` (best of 3 for ours and the floor, compile excluded; "
        f"Captum timed once). Ours: `jax.jit(jax.vmap(method))` in batches of {result['batch']}; the forward floor: "
        f"the same number of plain forward passes, `jax.jit(jax.vmap(f))` in the same batches. Captum: the same "
        f"evaluations per input, its perturbations batched (`perturbations_per_eval`); KernelSHAP and LIME loop "
        f"over inputs in Captum. Features: 20 segments of 2 samples (KernelSHAP, LIME, Shapley sampling, "
        f"permutation), every sample (ablation, 40).",
        "",
        "| method | evaluations / input | ours (s) | forward floor (s) | ours / floor | Captum (s) | Captum / ours |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        floor = f"{r['floor_s']:.3f}" if "floor_s" in r else "-"
        ratio = f"{r['ours_over_floor']:.2f}" if "ours_over_floor" in r else "-"
        lines.append(f"| {name} | {r['evaluations_per_input']} | {r['ours_s']:.3f} | {floor} | {ratio} | "
                     f"{r['captum_s']:.2f} | {r['captum_over_ours']:.1f}x |")
    lines += ["", "Goals: KernelSHAP and LIME >= 10x Captum; ablation, permutation and Shapley sampling within "
              "1.2x of the forward floor.", ""]
    path.write_text("\n".join(lines))


def main(argv=None) -> int:
    import argparse
    extra = argparse.ArgumentParser(add_help=False)
    extra.add_argument("--speed", action="store_true")
    extra.add_argument("--speed-only", action="store_true", help="only the speed rows (no comparison)")
    extra.add_argument("--speed-n", type=int, default=1000)
    known, rest = extra.parse_known_args(argv)
    args = cli.parse(__doc__, ROOT / "results" / "compare_shapley_captum", rest)
    if cli.missing(("torch", "captum", "sklearn"), args.out,
                   "see experiments/compare_metrics_peers.py for the peers venv"):
        return 0
    import torch
    torch.manual_seed(0)
    if not known.speed_only:
        result = {"about": __doc__.splitlines()[0], "captum": importlib.metadata.version("captum"),
                  "cases": compare()}
        cli.write(result, args, REFERENCE)
    if known.speed or known.speed_only:
        sp = speed(known.speed_n, args.data_dir)
        (args.out / "speed.json").write_text(__import__("json").dumps(sp, indent=1) + "\n")
        if not args.quick:
            write_speed(sp, ROOT / "docs" / "results" / "peer_speed_shapley.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
