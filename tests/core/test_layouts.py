"""channel_axis= on the methods and metrics that mask inputs by spatial maps: a channels-first
model on channels-first inputs gives exactly what its channels-last twin gives."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xai_jax as xj
from xai_jax import metrics

W = jax.random.normal(jax.random.key(0), (16, 3, 4))


def f_last(x):  # (L, C) -> 4 scores
    return jnp.tanh(jnp.einsum("lc,lck->k", x, W)) * 3.0


def f_first(x):  # (C, L): the same model, channels first
    return f_last(x.T)


XS = np.asarray(jax.random.uniform(jax.random.key(1), (5, 16, 3)))
MAPS = np.asarray(jax.random.uniform(jax.random.key(2), (5, 16)))
TS = np.array([0, 1, 2, 3, 0])


def test_rise_and_occlusion():
    key = jax.random.key(3)
    last = xj.rise(f_last, n_masks=64, grid=4, chunk_size=32)(XS[0], 1, key)
    first = xj.rise(f_first, n_masks=64, grid=4, chunk_size=32, channel_axis=0)(XS[0].T, 1, key)
    np.testing.assert_allclose(first, last, rtol=1e-6, atol=1e-7)
    last = xj.occlusion(f_last, window=3, stride=2)(XS[1], 2)
    first = xj.occlusion(f_first, window=3, stride=2, channel_axis=0)(XS[1].T, 2)
    np.testing.assert_allclose(first, last, rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="channel_axis=2 is out of range"):
        xj.occlusion(f_first, window=3, channel_axis=2)(XS[1].T, 2)


@pytest.mark.parametrize("name, kwargs", [
    ("drop_increase", dict(k=0.3)),
    ("deletion_insertion", dict(step=2)),
    ("pixel_flipping", dict(features_in_step=2)),
    ("region_perturbation", dict(patch_size=2, regions_evaluation=4)),
    ("road", dict(percentages=(10, 50, 90))),
    ("faithfulness_correlation", dict(subset_size=4, n_runs=8, key=jax.random.key(4))),
])
def test_metrics_read_channels_first_inputs(name, kwargs):
    metric = getattr(metrics, name)
    last = metric(f_last, XS, MAPS, targets=TS, **kwargs)
    first = metric(f_first, XS.transpose(0, 2, 1), MAPS, targets=TS, channel_axis=0, **kwargs)
    for k, v in last.items():
        if isinstance(v, str):
            assert first[k] == v
        else:
            np.testing.assert_allclose(first[k], v, rtol=1e-5, atol=1e-6, err_msg=k)


def test_infidelity_moves_attributions_methods_and_perturbations_with_the_inputs():
    key = jax.random.key(5)

    def noise(k, x):  # drawn in the caller's (channels-first) layout
        return 0.1 * jax.random.normal(k, x.shape)

    def noise_last(k, x):  # the same draws, for the channels-last twin
        return noise(k, x.T).T

    sal_last = np.asarray(jax.vmap(xj.saliency(f_last))(XS, TS))
    sal_first = np.asarray(jax.vmap(xj.saliency(f_first))(XS.transpose(0, 2, 1), TS))
    xs_first = XS.transpose(0, 2, 1)
    last = metrics.infidelity(f_last, XS, sal_last, TS, perturb_fn=noise_last, key=key)
    for attributions in (sal_first, xj.saliency(f_first)):  # an (N, C, L) array, a channels-first method
        first = metrics.infidelity(f_first, xs_first, attributions, TS, perturb_fn=noise, key=key, channel_axis=0)
        np.testing.assert_allclose(first["infidelity"], last["infidelity"], rtol=1e-4, atol=1e-7)
    # spatial maps are shared by the channels whatever the layout
    last = metrics.infidelity(f_last, XS, MAPS, TS, perturb_fn=noise_last, key=key)
    first = metrics.infidelity(f_first, xs_first, MAPS, TS, perturb_fn=noise, key=key, channel_axis=0)
    np.testing.assert_allclose(first["infidelity"], last["infidelity"], rtol=1e-4, atol=1e-7)

    # a layout-dependent perturbation (the first channel only) sees the caller's layout
    def first_channel(k, x):  # x: (C, L)
        return x.at[1:].set(0.0) * 0.5

    def first_channel_last(k, x):  # the same on (L, C)
        return x.at[:, 1:].set(0.0) * 0.5

    last = metrics.infidelity(f_last, XS, sal_last, TS, perturb_fn=first_channel_last, key=key)
    first = metrics.infidelity(f_first, xs_first, sal_first, TS, perturb_fn=first_channel, key=key, channel_axis=0)
    np.testing.assert_allclose(first["infidelity"], last["infidelity"], rtol=1e-4, atol=1e-7)


def test_input_shaped_saliency_lists_and_delta_methods():
    # faithfulness correlation takes maps shaped like the inputs: they move with the inputs
    sal = np.asarray(jax.vmap(xj.gradient_x_input(f_last))(XS, TS))
    kw = dict(subset_size=4, n_runs=8, key=jax.random.key(4))
    last = metrics.faithfulness_correlation(f_last, XS, sal, targets=TS, **kw)
    first = metrics.faithfulness_correlation(f_first, XS.transpose(0, 2, 1), sal.transpose(0, 2, 1), targets=TS,
                                             channel_axis=0, **kw)
    np.testing.assert_allclose(first["correlation"], last["correlation"], rtol=1e-5, atol=1e-6)
    # a list of channels-first inputs is laid out too
    want = metrics.drop_increase(f_last, XS, MAPS, targets=TS)
    got = metrics.drop_increase(f_first, list(XS.transpose(0, 2, 1)), MAPS, targets=TS, channel_axis=0)
    np.testing.assert_allclose(got["drop"], want["drop"], rtol=1e-5, atol=1e-7)
    with pytest.raises(TypeError, match="return_delta"):
        metrics.infidelity(f_last, XS, xj.integrated_gradients(f_last, steps=4, return_delta=True), TS,
                           perturb_fn=metrics.gaussian_perturbation(0.1), key=jax.random.key(0))
