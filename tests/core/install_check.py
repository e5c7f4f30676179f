"""The library's dependency split, checked in a fresh interpreter: with the optional packages
made unimportable, `import xai_jax, xai_jax.metrics` works and the gradient methods run on a
plain function. Used by tests/core/test_install.py and experiments/check_install.sh.

    python tests/core/install_check.py          # exits 0 and prints "install check OK"
"""

import importlib.abc
import sys

# every package that an extra (flax, equinox, haiku, viz, xrai, study, tfds) brings in
BLOCKED = ("flax", "optax", "orbax", "equinox", "haiku", "matplotlib", "skimage", "tensorflow",
           "tensorflow_datasets", "mnist1d", "h5py", "PIL")


class _Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is blocked: the library must not need it")
        return None


def main() -> None:
    already = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
    assert not already, already
    sys.meta_path.insert(0, _Blocker())

    import jax
    import jax.numpy as jnp
    import numpy as np

    import xai_jax
    import xai_jax.metrics  # noqa: F401

    def g(x):  # x (L, C) -> 3 class scores: (sum of x) * [0, 1, 2]
        return (x.sum(-1, keepdims=True) * jnp.arange(3.0)).sum(0)

    x = jnp.ones((5, 2), jnp.float32)
    for name, method in {"saliency": xai_jax.saliency(g), "gradient_x_input": xai_jax.gradient_x_input(g),
                         "integrated_gradients": xai_jax.integrated_gradients(g, steps=8)}.items():
        a = np.asarray(method(x, 2))
        assert a.shape == x.shape, (name, a.shape)
        assert np.allclose(a, 2.0), (name, a)  # dF_2/dx = 2 everywhere; x = 1 and IG is exact here
    sg = np.asarray(xai_jax.smoothgrad(xai_jax.saliency(g), n_samples=4)(x, 1, jax.random.key(0)))
    assert np.allclose(sg, 1.0), sg
    # the metrics and the Method contract on a plain function
    xs = np.asarray(jax.random.normal(jax.random.key(1), (4, 5, 2)), np.float32)
    r = xai_jax.metrics.deletion_insertion(g, xs, xai_jax.saliency(g), np.array([1, 2, 1, 2]))
    assert r.scores["deletion_auc"].shape == (4,), r
    # an optional extra that is missing: a clear message naming it
    import xai_jax.plot

    for call, extra in ((lambda: xai_jax.felzenszwalb_segments(np.zeros((8, 8, 3))), "xai_jax[xrai]"),
                        (lambda: xai_jax.plot.images_grid(xs, {}), "xai_jax[viz]")):
        try:
            call()
        except ImportError as e:
            assert extra in str(e), str(e)
        else:
            raise AssertionError(f"expected an ImportError naming {extra}")
    loaded = sorted({m.split(".")[0] for m in sys.modules} & set(BLOCKED))
    assert not loaded, loaded
    print("install check OK")


if __name__ == "__main__":
    main()
