"""The Flax -> PyTorch transplant (experiments/peers/transplant.py) that every peer comparison
uses: the torch twins of the bundled models give the flax logits. Needs torch (the optional
peers venv); skipped without it."""

import copy

import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytestmark = pytest.mark.peers  # make peers
torch = pytest.importorskip("torch", reason="torch is an optional peer (install it in .venv-peers)")

from experiments.peers import transplant  # noqa: E402
from xai_jax.study.models import mnist1d_cnn, vgg7  # noqa: E402

CASES = [
    ("mnist1d study", lambda: mnist1d_cnn("study"), (40, 1)),
    ("mnist1d wide", lambda: mnist1d_cnn("wide"), (40, 1)),
    ("vgg7 study", lambda: vgg7("study"), (32, 32, 3)),
    ("vgg7 vgg7", lambda: vgg7("vgg7"), (24, 20, 3)),  # odd pooled sizes: floor on both sides
]


def _random_params(model, shape, seed):
    params = model.init(jax.random.key(seed), jnp.zeros((1, *shape), jnp.float32))["params"]
    # non-zero biases, so that a bias mapped to the wrong layer or axis shows
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(seed + 100), len(leaves))
    leaves = [p + 0.1 * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys)]
    return jax.tree.unflatten(tree, leaves)


def _logits(twin, xs_last):
    with torch.no_grad():
        return twin(torch.from_numpy(transplant.to_channels_first(xs_last))).numpy()


@pytest.mark.parametrize("name,make,shape", CASES, ids=[c[0] for c in CASES])
def test_torch_twin_logits_equal_flax(name, make, shape):
    model = make()
    params = _random_params(model, shape, 0)
    twin = transplant.from_flax(model, params)
    assert not twin.training
    xs = np.asarray(jax.random.normal(jax.random.key(1), (6, *shape)), np.float32)
    want = np.asarray(model.apply({"params": params}, xs))
    got = _logits(twin, xs)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    # the weight layers are exactly the flax layers, in call order (Quantus iterates them)
    assert [n for n, m in twin.named_modules() if hasattr(m, "reset_parameters")] == list(params)


def test_round_trip_and_signal_as_one_row_image():
    model = mnist1d_cnn("study")
    params = _random_params(model, (40, 1), 3)
    twin = transplant.from_flax(model, params)
    back = transplant.to_flax_params(twin)
    for layer in params:
        for leaf in ("kernel", "bias"):
            np.testing.assert_array_equal(back[layer][leaf], np.asarray(params[layer][leaf]))
    xs = transplant.to_channels_first(np.random.default_rng(0).normal(size=(3, 40, 1)))
    with torch.no_grad():
        flat = twin(torch.from_numpy(xs)).numpy()
        as_image = twin(torch.from_numpy(xs[:, :, None, :])).numpy()
    np.testing.assert_array_equal(flat, as_image)


def test_reset_source_loads_the_given_params_in_deep_copies():
    model = mnist1d_cnn("study")
    params = _random_params(model, (40, 1), 0)
    fresh = _random_params(model, (40, 1), 7)
    twin = transplant.set_reset_source(transplant.from_flax(model, params), fresh)
    clone = copy.deepcopy(twin)  # what Quantus randomises
    for _, layer in clone.named_modules():
        if hasattr(layer, "reset_parameters") and hasattr(layer, "weight"):
            layer.reset_parameters()
    xs = np.asarray(jax.random.normal(jax.random.key(2), (4, 40, 1)), np.float32)
    np.testing.assert_allclose(_logits(clone, xs), np.asarray(model.apply({"params": fresh}, xs)),
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(_logits(twin, xs), np.asarray(model.apply({"params": params}, xs)),
                               rtol=1e-5, atol=1e-5)
    transplant.set_reset_source(clone, None)
    clone.conv1d.reset_parameters()  # torch's initialiser again: the weights change
    assert not np.allclose(clone.conv1d.weight.detach().numpy(), transplant.conv_weight(fresh["conv1d"]["kernel"]))


def test_mismatched_params_are_rejected():
    model = mnist1d_cnn("study")
    params = dict(_random_params(model, (40, 1), 0))
    twin = transplant.from_flax(model, params)
    wide = _random_params(mnist1d_cnn("wide"), (40, 1), 0)
    with pytest.raises(ValueError, match="layers"):
        transplant.load_flax_params(twin, wide)
    with pytest.raises(TypeError, match="no torch twin"):
        transplant.from_flax(object(), params)
