"""Run by tests/core/test_distributed.py in a subprocess with 8 forced host devices."""

import jax
import jax.numpy as jnp
import numpy as np

import xai_jax as xj
from xai_jax.attribution.perturbation import rise
from xai_jax.distributed import data_mesh
from xai_jax.metrics import drop_increase
from xai_jax.study.models import mnist1d_cnn
from xai_jax.study.train import TrainConfig, fit

assert len(jax.devices()) == 8, jax.devices()
mesh = data_mesh()
rng = np.random.default_rng(0)
xs = rng.normal(size=(13, 40, 1)).astype(np.float32)  # 13: not a multiple of 8
ts = rng.integers(0, 10, 13)
model = mnist1d_cnn("study")
params = model.init(jax.random.key(0), jnp.zeros((1, 40, 1)))["params"]
f = xj.model_fn(model, params)
key = jax.random.key(1)
for name, method, keyed in [
    ("ig", xj.integrated_gradients(f, steps=16), False),
    ("grad_cam", xj.grad_cam(model, params), False),
    ("rise", rise(f, n_masks=64, grid=8, chunk_size=32), True),
]:
    k = key if keyed else None
    single = xj.attribute(method, xs, ts, batch_size=5, key=k, progress=False)
    sharded = xj.attribute(method, xs, ts, batch_size=5, key=k, mesh=mesh, progress=False)
    np.testing.assert_allclose(sharded, single, rtol=2e-4, atol=1e-5, err_msg=name)
    print(name, "equal on 8 devices")
maps = np.abs(xs[..., 0])
a = drop_increase(f, xs, maps, k=0.3)
b = drop_increase(f, xs, maps, k=0.3, mesh=mesh)
np.testing.assert_allclose(a["drop"], b["drop"], rtol=1e-5, atol=1e-6)
print("drop_increase equal on 8 devices")
x_train = rng.normal(size=(256, 40, 1)).astype(np.float32)
y_train = rng.integers(0, 10, 256)
cfg = TrainConfig(steps=3, batch_size=64, warmup_steps=1, chunk=1)
s1, _ = fit(model, x_train, y_train, cfg, num_classes=10, progress=False)
s8, _ = fit(model, x_train, y_train, cfg, num_classes=10, progress=False, mesh=mesh)
for p1, p8 in zip(jax.tree.leaves(s1.params), jax.tree.leaves(s8.params)):
    np.testing.assert_allclose(p8, p1, rtol=1e-4, atol=1e-5)
print("train steps equal on 8 devices")
print("ALL OK")
