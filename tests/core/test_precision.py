"""precision=: it reaches every matrix product and convolution a method lowers to (forward
and backward), and every model evaluation of the metrics."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xai_jax as xj
from xai_jax import metrics as xm
from xai_jax.attribution.feature_masks import sise
from xai_jax.attribution.perturbation import rise
from xai_jax.study.models import mnist1d_cnn

MODEL = mnist1d_cnn("study")
PARAMS = MODEL.init(jax.random.key(0), jnp.zeros((1, 40, 1)))["params"]
F = xj.model_fn(MODEL, PARAMS)

METHODS = {  # name -> (factory taking precision=, keyed)
    "saliency": (lambda p: xj.saliency(F, precision=p), False),
    "gradient_x_input": (lambda p: xj.gradient_x_input(F, precision=p), False),
    "smoothgrad": (lambda p: xj.smoothgrad(xj.saliency(F), n_samples=4, precision=p), True),
    "ig": (lambda p: xj.integrated_gradients(F, steps=8, precision=p), False),
    "ig_chunked": (lambda p: xj.integrated_gradients(F, steps=8, chunk_size=4, precision=p), False),
    "ig_auto": (lambda p: xj.integrated_gradients(F, steps="auto", max_steps=32, precision=p), False),
    "grad_cam": (lambda p: xj.grad_cam(MODEL, PARAMS, precision=p), False),
    "grad_cam_plus_plus": (lambda p: xj.grad_cam_plus_plus(MODEL, PARAMS, precision=p), False),
    "score_cam": (lambda p: xj.score_cam(MODEL, PARAMS, precision=p), False),
    "sise": (lambda p: sise(MODEL, PARAMS, precision=p), False),
    "rise": (lambda p: rise(F, n_masks=8, grid=4, chunk_size=4, precision=p), True),
    "occlusion": (lambda p: xj.occlusion(F, window=8, precision=p), False),
}


def _products(method, keyed: bool) -> list[str]:
    """The dot_general / convolution lines of jit(vmap(method)) lowered on two inputs."""
    args = [jnp.zeros((2, 40, 1)), jnp.zeros(2, jnp.int32)]
    if keyed:
        args.append(jax.random.split(jax.random.key(0), 2))
    text = jax.jit(jax.vmap(method)).lower(*args).as_text()
    return [line for line in text.split("\n") if re.search(r"stablehlo\.(dot_general|convolution)", line)]


@pytest.mark.parametrize("name", METHODS)
def test_precision_reaches_every_product_of_every_method(name):
    make, keyed = METHODS[name]
    lines = _products(make("highest"), keyed)
    assert len(lines) >= 2, lines  # the model's forward at least, and a gradient where there is one
    missing = [line.strip()[:160] for line in lines if "HIGHEST" not in line]
    assert not missing, missing
    # "high" reaches them too (a method's own fixed-precision products, e.g. RISE's mask
    # upsampling at HIGHEST, keep theirs); None leaves the model's products at JAX's default
    high = _products(make("high"), keyed)
    assert all("HIGH" in line for line in high)
    assert sum(("HIGH," in line or "precision HIGH>" in line) for line in high) >= 2
    default = _products(make(None), keyed)
    assert sum("HIGH" not in line for line in default) >= 2


def test_gradient_methods_differentiate_at_the_chosen_precision():
    # a backward convolution (the input gradient) exists and carries the precision
    lines = _products(METHODS["saliency"][0]("highest"), False)
    backward = [line for line in lines if "[0, o, i]" in line]  # the transposed kernel of the input gradient
    assert backward and all("HIGHEST" in line for line in backward)


def test_bad_precision_is_named():
    with pytest.raises(ValueError, match="precision"):
        xj.saliency(F, precision="fast")
    with pytest.raises(ValueError, match="precision"):
        xm.drop_increase(F, np.zeros((2, 40, 1), np.float32), np.ones((2, 40), np.float32), precision="exact")


def _spy():
    """A model that records the matmul precision in effect whenever it is traced."""
    seen = []

    def f(x):
        seen.append(jax.config.jax_default_matmul_precision)
        return F(x)

    return f, seen


RNG = np.random.default_rng(0)
XS = RNG.normal(size=(4, 40, 1)).astype(np.float32)
MAPS = RNG.random(size=(4, 40)).astype(np.float32)
TS = np.array([0, 1, 2, 3])

METRICS = {
    "drop_increase": lambda f, p: xm.drop_increase(f, XS, MAPS, k=0.3, targets=TS, precision=p),
    "deletion_insertion": lambda f, p: xm.deletion_insertion(f, XS, MAPS, targets=TS, precision=p),
    "pixel_flipping": lambda f, p: xm.pixel_flipping(f, XS, MAPS, targets=TS, precision=p),
    "road": lambda f, p: xm.road(f, XS, MAPS, targets=TS, percentages=[10, 50], precision=p),
    "faithfulness_correlation": lambda f, p: xm.faithfulness_correlation(
        f, XS, MAPS, targets=TS, subset_size=4, n_runs=3, key=jax.random.key(0), precision=p),
    "random_logit": lambda f, p: xm.random_logit(xj.saliency, f, XS, TS, key=jax.random.key(0),
                                                 reduce=lambda m: m[..., 0], precision=p),
}


@pytest.mark.parametrize("name", METRICS)
@pytest.mark.parametrize("precision", ["highest", None])
def test_metrics_trace_the_model_at_their_precision(name, precision):
    f, seen = _spy()
    METRICS[name](f, precision)
    assert seen and set(seen) == {precision}, seen


def test_randomisation_metrics_trace_the_model_at_their_precision():
    seen = []

    def make(p):  # a new make_method per metric: compiled programs are cached on it
        g = xj.model_fn(MODEL, p)

        def f(x):
            seen.append(jax.config.jax_default_matmul_precision)
            return g(x)

        return xj.saliency(f)

    for run in (xm.mprt, xm.efficient_mprt, xm.smooth_mprt):
        seen.clear()
        kwargs = {"n_noisy": 2} if run is xm.smooth_mprt else {}
        run(lambda p: make(p), MODEL, PARAMS, XS, TS, key=jax.random.key(1), reduce=lambda m: m[..., 0], **kwargs)
        assert seen and set(seen) == {"highest"}, (run.__name__, seen)
