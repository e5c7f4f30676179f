"""Every method and metric at its default arguments on ONE 224 x 224 x 3 input of the study's
VGG-7 ("study" preset, 8 classes, random weights): the cases of the memory checks
(tests/core/test_memory.py).

    python tests/core/memcheck_cases.py NAME [--compile-only]

runs one case in this process and prints one JSON line: {"name", "seconds", "max_rss_mib"}
(with --compile-only: XLA's memory analysis of the programs the case would run, in bytes,
instead of running them; see xai_jax.batching.compile_only).

Arguments besides the defaults: the ones a factory requires (occlusion's window: the study's
16 px at 224, stride 8; expected_gradients' baselines: 8 reference images; infidelity's
perturb_fn: gaussian_perturbation). `RUN_ONLY` lists the cases whose end-to-end run (not their
compile-only check) shortens the number of passes, never their size: the memory of a pass is
what the check bounds, and RISE's 8,000 masks or pixel flipping's 50,176 steps would run for
tens of minutes on a CPU at 224 px.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

SIZE = 224
LIMIT_BYTES = 4 * 2**30  # the issue's goal: every method and metric fits 4 GiB at 224 x 224 x 3


def setup():
    """(f, model, x (224, 224, 3), maps (1, 224, 224), xs (1, 224, 224, 3), target)."""
    import xai_jax as xj
    from xai_jax.study.models import vgg7
    module = vgg7("study")
    variables = module.init(jax.random.key(0), jnp.zeros((1, SIZE, SIZE, 3)))
    model = xj.Model(module, variables)
    f = xj.model_fn(module, variables["params"])
    rng = np.random.default_rng(0)
    xs = rng.random((1, SIZE, SIZE, 3)).astype(np.float32)
    maps = rng.random((1, SIZE, SIZE)).astype(np.float32)
    return f, model, xs, maps


def methods(f, model) -> dict[str, Callable]:
    """name -> zero-argument factory of the Method at its defaults."""
    import xai_jax as xj
    refs = np.random.default_rng(1).random((8, SIZE, SIZE, 3)).astype(np.float32)
    return {
        "saliency": lambda: xj.saliency(f),
        "gradient_x_input": lambda: xj.gradient_x_input(f),
        "integrated_gradients": lambda: xj.integrated_gradients(f),
        "smoothgrad": lambda: xj.smoothgrad(xj.saliency(f)),
        "expected_gradients": lambda: xj.expected_gradients(f, baselines=refs),
        "guided_ig": lambda: xj.guided_ig(f),
        "blur_ig": lambda: xj.blur_ig(f),
        "rise": lambda: xj.rise(f),
        "occlusion": lambda: xj.occlusion(f, window=16, stride=8),
        "grad_cam": lambda: xj.grad_cam(model),
        "grad_cam_plus_plus": lambda: xj.grad_cam_plus_plus(model),
        "xgrad_cam": lambda: xj.xgrad_cam(model),
        "hires_cam": lambda: xj.hires_cam(model),
        "layer_cam": lambda: xj.layer_cam(model),
        "grad_cam_element_wise": lambda: xj.grad_cam_element_wise(model),
        "eigen_cam": lambda: xj.eigen_cam(model),
        "ablation_cam": lambda: xj.ablation_cam(model),
        "score_cam": lambda: xj.score_cam(model),
        "sise": lambda: xj.sise(model),
    }


def metrics(f, model, xs, maps) -> dict[str, Callable]:
    """name -> zero-argument call of the metric at its defaults on one input (target 1)."""
    import xai_jax as xj
    import xai_jax.metrics as M
    t = np.array([1])
    attributions = lambda: np.repeat(maps[..., None], 3, -1) / 3  # noqa: E731
    return {
        "drop_increase": lambda: M.drop_increase(f, xs, maps, t),
        "deletion_insertion": lambda: M.deletion_insertion(f, xs, maps, t),
        "pixel_flipping": lambda: M.pixel_flipping(f, xs, maps, t),
        "region_perturbation": lambda: M.region_perturbation(f, xs, maps, t),
        "road": lambda: M.road(f, xs, maps, t),
        "faithfulness_correlation": lambda: M.faithfulness_correlation(f, xs, maps, t),
        "infidelity": lambda: M.infidelity(f, xs, attributions(), t, perturb_fn=M.gaussian_perturbation(0.003)),
        "max_sensitivity": lambda: M.max_sensitivity(f, xs, xj.saliency(f), t),
        "completeness": lambda: M.completeness(f, xs, xj.integrated_gradients(f), t),
        "mprt": lambda: M.mprt(model, xs, xj.saliency(model), t),
        "smooth_mprt": lambda: M.smooth_mprt(model, xs, xj.saliency(model), t),
        "efficient_mprt": lambda: M.efficient_mprt(model, xs, xj.saliency(model), t),
        "random_logit": lambda: M.random_logit(model, xs, xj.saliency(model), t),
        "pointing_game": lambda: M.pointing_game(maps, maps > 0.5),
        "relevance_mass": lambda: M.relevance_mass(maps, maps > 0.5),
        "localisation_auroc": lambda: M.localisation_auroc(maps, maps > 0.5),
        "sparseness": lambda: M.sparseness(maps),
        "complexity": lambda: M.complexity(maps),
    }


# end-to-end runs with fewer passes of the default size (see the module docstring)
RUN_ONLY = {
    "rise": dict(n_masks=500),                        # 2 passes of the default 250 masks
    "pixel_flipping": dict(features_in_step=896),     # 56 steps: 3 passes of 27 (the default pass)
    "deletion_insertion": dict(n_points=26),          # 27 points: 3 passes of 13 (26 min with 101 on a CPU)
}
NO_MODEL = ("pointing_game", "relevance_mass", "localisation_auroc", "sparseness", "complexity")


def issue_cases() -> dict[str, Callable[[], object]]:
    """The three out-of-memory cases of issue 21, end to end."""
    import xai_jax as xj
    import xai_jax.metrics as M
    from xai_jax.study.models import mnist1d_cnn, vgg7

    def deletion_32():  # two 32 x 32 images with tied maps: std::bad_alloc at 12 GB before
        module = vgg7("study")
        f = xj.model_fn(module, module.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))["params"])
        rng = np.random.default_rng(0)
        maps = np.round(rng.random((2, 32, 32)), 1).astype(np.float32)  # ties: 64 orders per input
        return M.deletion_insertion(f, rng.random((2, 32, 32, 3)).astype(np.float32), maps, np.array([0, 1]))

    def occlusion_16k():  # window 1, chunk_size 64 on a (16000, 1) signal: 3.6 GB before
        k = jax.random.normal(jax.random.key(0), (5, 1, 8))
        w = jax.random.normal(jax.random.key(1), (8, 10))

        def f(x):  # a 1-D conv net: conv(5 taps, 8 channels) -> ReLU -> global average -> dense
            a = jax.lax.conv_general_dilated(x[None], k, (1,), "SAME", dimension_numbers=("NWC", "WIO", "NWC"))
            return jax.nn.relu(a[0]).mean(0) @ w

        x = jax.random.normal(jax.random.key(2), (16000, 1))
        return jax.block_until_ready(xj.occlusion(f, window=1, chunk_size=64)(x, 3))

    def ig_gauss_legendre_20000():  # 6.5 GB and minutes in NumPy's leggauss before
        module = mnist1d_cnn("study")
        f = xj.model_fn(module, module.init(jax.random.key(0), jnp.zeros((1, 40, 1)))["params"])
        x = jax.random.normal(jax.random.key(1), (40, 1))
        return jax.block_until_ready(xj.integrated_gradients(f, steps=20000, rule="gauss_legendre")(x, 3))

    return {"issue21_deletion_insertion_32px": deletion_32, "issue21_occlusion_16k": occlusion_16k,
            "issue21_ig_gauss_legendre_20000": ig_gauss_legendre_20000}


def case(name: str, run: bool) -> Callable[[], object]:
    """The zero-argument call of case `name` (a method runs on the one input, target 1)."""
    import xai_jax as xj
    import xai_jax.metrics as M
    if name.startswith("issue21_"):
        return issue_cases()[name]
    f, model, xs, maps = setup()
    table = methods(f, model)
    if name in table:
        method = table[name]()
        if run and name in RUN_ONLY:
            method = xj.rise(f, **RUN_ONLY[name])
        args = (jnp.asarray(xs[0]), 1) + ((jax.random.key(0),) if method.keyed else ())
        if run:
            return lambda: jax.block_until_ready(method(*args))
        return lambda: jax.jit(method).lower(*args).compile().memory_analysis()
    call = metrics(f, model, xs, maps)[name]
    if run and name in RUN_ONLY:
        return lambda: getattr(M, name)(f, xs, maps, np.array([1]), **RUN_ONLY[name])
    return call


def main() -> None:
    name, compile_only = sys.argv[1], "--compile-only" in sys.argv[2:]
    t0 = time.perf_counter()
    out: dict = {"name": name}
    if compile_only:
        from xai_jax.batching import compile_only as plan_only
        call = case(name, run=False)
        with plan_only() as plan:
            result = call()
        analyses = [a for _, a in plan] + ([result] if hasattr(result, "temp_size_in_bytes") else [])
        out["bytes"] = max((a.temp_size_in_bytes + a.argument_size_in_bytes + a.output_size_in_bytes
                            for a in analyses), default=0)
        out["programs"] = len(analyses)
    else:
        case(name, run=True)()
    out["seconds"] = round(time.perf_counter() - t0, 1)
    out["max_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
