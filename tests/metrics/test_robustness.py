import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xai_jax as xj
from tests.models_small import linear_f
from xai_jax.metrics.robustness import gaussian_perturbation, infidelity, max_sensitivity, sample_key

KEY = jax.random.key(7)
F, W, C = linear_f(num_classes=3, shape=(6, 2))
XS = np.random.default_rng(0).normal(size=(5, 6, 2)).astype(np.float32)
T = np.array([0, 1, 2, 0, 1], np.int32)
GRAD = W[T].reshape(5, 6, 2)  # the exact gradient of the linear model for each target
G = gaussian_perturbation(0.1)
SAL = xj.saliency(F)


# ----------------------------------------------------------------------------- infidelity


def test_infidelity_zero_for_exact_gradient_of_linear_model():
    # f(x) - f(x - I) = W_t . I = I^T grad exactly: every squared error is 0
    r = infidelity(F, XS, GRAD, T, perturb_fn=G, key=KEY)
    np.testing.assert_allclose(r["infidelity"], 0.0, atol=1e-10)
    # the same through a method evaluated inside the metric, and with targets=None
    r_method = infidelity(F, XS, SAL, T, perturb_fn=G, key=KEY)
    np.testing.assert_allclose(r_method["infidelity"], 0.0, atol=1e-10)
    r_pred = infidelity(F, XS, SAL, None, perturb_fn=G, key=KEY)
    np.testing.assert_allclose(r_pred["infidelity"], 0.0, atol=1e-10)


def test_infidelity_of_wrong_maps_by_hand():
    sigma, n = 0.1, 10
    r = infidelity(F, XS, -GRAD, T, perturb_fn=G, key=KEY, n_perturb_samples=n)
    # a = -grad: (I^T a - grad^T I)^2 = 4 (grad^T I)^2, with I the documented draws
    want = []
    for i in range(len(XS)):
        dots = [float((sigma * jax.random.normal(sample_key(KEY, i, s), (6, 2)) * GRAD[i]).sum()) for s in range(n)]
        want.append(np.mean([4 * d**2 for d in dots]))
    np.testing.assert_allclose(r["infidelity"], want, rtol=1e-4)
    assert (r["infidelity"] > 0).all()


def test_infidelity_normalize_removes_scale():
    kw = dict(perturb_fn=G, key=KEY)
    plain = infidelity(F, XS, 3 * GRAD, T, **kw)["infidelity"]
    normed = infidelity(F, XS, 3 * GRAD, T, normalize=True, **kw)["infidelity"]
    assert (plain > 1e-4).all()
    np.testing.assert_allclose(normed, 0.0, atol=1e-9)
    # beta = 0 for a zero map (safe division): the score is E[diff^2] either way
    z_plain = infidelity(F, XS, np.zeros_like(XS), T, **kw)["infidelity"]
    z_norm = infidelity(F, XS, np.zeros_like(XS), T, normalize=True, **kw)["infidelity"]
    np.testing.assert_allclose(z_norm, z_plain, rtol=1e-6)


def test_infidelity_pair_perturbation_spatial_maps_and_batches():
    g = gaussian_perturbation(0.2)
    single = infidelity(F, XS, -GRAD, T, perturb_fn=g, key=KEY)["infidelity"]
    pair = infidelity(F, XS, -GRAD, T, perturb_fn=lambda k, x: (g(k, x), x - g(k, x)), key=KEY)["infidelity"]
    np.testing.assert_allclose(pair, single, rtol=1e-6)
    small = infidelity(F, XS, -GRAD, T, perturb_fn=g, key=KEY, batch_size=2)["infidelity"]
    np.testing.assert_allclose(small, single, rtol=1e-6)
    # one-channel model: (N, L) maps equal (N, L, 1) attributions
    f1, w1, _ = linear_f(num_classes=2, shape=(8, 1))
    xs1 = XS.reshape(5, 12, 1)[:, :8]
    maps = np.random.default_rng(3).normal(size=(5, 8)).astype(np.float32)
    a = infidelity(f1, xs1, maps, None, perturb_fn=g, key=KEY)["infidelity"]
    b = infidelity(f1, xs1, maps[..., None], None, perturb_fn=g, key=KEY)["infidelity"]
    np.testing.assert_allclose(a, b, rtol=1e-6)


def test_infidelity_bad_input():
    g = G
    with pytest.raises(ValueError, match="at least one input"):
        infidelity(F, XS[:0], GRAD[:0], T[:0], perturb_fn=g, key=KEY)
    with pytest.raises(ValueError, match="targets must lie"):
        infidelity(F, XS, GRAD, T + 1, perturb_fn=g, key=KEY)
    with pytest.raises(ValueError, match="attributions must have shape"):
        infidelity(F, XS, GRAD[:, :5], T, perturb_fn=g, key=KEY)
    with pytest.raises(ValueError, match="perturb_fn must return"):
        infidelity(F, XS, GRAD, T, perturb_fn=lambda k, x: x[0], key=KEY)
    with pytest.raises(TypeError, match="jax.random key"):
        infidelity(F, XS, GRAD, T, perturb_fn=g, key=0)
    with pytest.raises(ValueError, match="n_perturb_samples"):
        infidelity(F, XS, GRAD, T, perturb_fn=g, key=KEY, n_perturb_samples=0)
    with pytest.raises(ValueError, match="sigma"):
        gaussian_perturbation(0.0)


# ----------------------------------------------------------------------------- max sensitivity


def quadratic(a=3.0):
    """f(x) = [a/2 ||x||^2, 0]: saliency of class 0 is a x."""
    return lambda x: jnp.stack([0.5 * a * (x**2).sum(), jnp.asarray(0.0)])


def test_max_sensitivity_zero_for_constant_explanations():
    r = max_sensitivity(SAL, XS, T, key=KEY)  # linear model: the gradient never changes
    np.testing.assert_array_equal(r["sensitivity"], 0.0)
    ones = lambda x, t: jnp.ones_like(x)  # noqa: E731
    np.testing.assert_array_equal(max_sensitivity(ones, XS, T, key=KEY, num_classes=3)["sensitivity"], 0.0)


def test_max_sensitivity_closed_form_on_quadratic_model():
    radius, n = 0.05, 10
    xs = np.random.default_rng(1).normal(size=(4, 40, 1)).astype(np.float32)
    r = max_sensitivity(xj.saliency(quadratic()), xs, np.zeros(4, np.int32), key=KEY, radius=radius,
                        n_perturb_samples=n)["sensitivity"]
    # e(x + d) - e(x) = a d and ||e(x)|| = a ||x||: SENS = max_s ||d_s|| / ||x|| (the documented draws)
    norms = np.linalg.norm(xs.reshape(4, -1), axis=1)
    want = [max(float(jnp.linalg.norm(jax.random.uniform(sample_key(KEY, i, s), (40, 1), jnp.float32, -radius,
                                                          radius))) for s in range(n)) / norms[i]
            for i in range(4)]
    np.testing.assert_allclose(r, want, rtol=1e-4)
    # and the bound: ||d|| <= radius sqrt(D), E||d||^2 = D radius^2 / 3
    assert (r <= radius * math.sqrt(40) / norms).all()
    assert (r >= 0.9 * radius * math.sqrt(40 / 3) / norms).all()
    # the max norm: max_s max|d_s| / max|x|
    r_inf = max_sensitivity(xj.saliency(quadratic()), xs, np.zeros(4, np.int32), key=KEY, radius=radius,
                            norm=math.inf)["sensitivity"]
    assert (r_inf <= radius / np.abs(xs.reshape(4, -1)).max(1) + 1e-6).all()


def test_max_sensitivity_zero_map_divides_by_one_and_batches():
    radius = 0.1
    xs = np.random.default_rng(2).normal(size=(3, 5, 1)).astype(np.float32)
    # e(x) = x - x0 with x0 = x: ||e(x)|| = 0, so SENS = max ||d|| (Captum divides by 1)
    x0 = jnp.asarray(xs)

    def shifted(x, t):
        return x - x0[t]

    r = max_sensitivity(shifted, xs, np.arange(3), key=KEY, radius=radius, num_classes=3)["sensitivity"]
    want = [max(float(jnp.linalg.norm(jax.random.uniform(sample_key(KEY, i, s), (5, 1), jnp.float32, -radius,
                                                          radius))) for s in range(10)) for i in range(3)]
    np.testing.assert_allclose(r, want, rtol=1e-5)
    r1 = max_sensitivity(shifted, xs, np.arange(3), key=KEY, radius=radius, num_classes=3, batch_size=1)
    np.testing.assert_allclose(r1["sensitivity"], r, rtol=1e-6)


def test_max_sensitivity_bad_input():
    sal = SAL
    with pytest.raises(ValueError, match="radius"):
        max_sensitivity(sal, XS, T, key=KEY, radius=-1.0)
    with pytest.raises(ValueError, match="targets must lie"):
        max_sensitivity(sal, XS, T + 1, key=KEY)
    with pytest.raises(TypeError, match="num_classes is required"):
        max_sensitivity(lambda x, t: x, XS, T, key=KEY)
    with pytest.raises(TypeError, match="norm"):
        max_sensitivity(sal, XS, T, key=KEY, norm="nuc")
    with pytest.raises(ValueError, match="at least one input"):
        max_sensitivity(sal, XS[:0], T[:0], key=KEY)
