"""Run by tests/core/test_multiprocess.py: attribution, metrics and training on one global mesh.

    python tests/core/multiprocess_check.py single OUT            # 1 process, 8 forced CPU devices
    python tests/core/multiprocess_check.py PROCESS_ID OUT PORT   # one of 2 processes, 4 devices each

Every process passes only its own shard of the inputs (process p: rows p * 13 .. p * 13 + 12
of 26) and gets the global result; process 0 (or the single process) saves it to OUT.
"""

import os
import sys

mode, out = sys.argv[1], sys.argv[2]
multi = mode != "single"
os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={4 if multi else 8}"

import jax  # noqa: E402

if multi:
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=f"127.0.0.1:{sys.argv[3]}", num_processes=2,
                               process_id=int(mode))

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import xai_jax as xj  # noqa: E402
from xai_jax.attribution.perturbation import rise  # noqa: E402
from xai_jax.distributed import data_mesh, to_host  # noqa: E402
from xai_jax.metrics import deletion_insertion, drop_increase  # noqa: E402
from xai_jax.study.models import mnist1d_cnn  # noqa: E402
from xai_jax.study.train import TrainConfig, fit  # noqa: E402

assert jax.device_count() == 8, jax.devices()
mesh = data_mesh(jax.devices())  # every process's devices
rng = np.random.default_rng(0)
xs_all = rng.normal(size=(26, 40, 1)).astype(np.float32)
ts_all = rng.integers(0, 10, 26)
x_train_all = rng.normal(size=(256, 40, 1)).astype(np.float32)
y_train_all = rng.integers(0, 10, 256)
if multi:
    p = int(mode)
    mine = slice(p * 13, (p + 1) * 13)
    xs, ts = xs_all[mine], ts_all[mine]
    x_train, y_train = x_train_all[p * 128:(p + 1) * 128], y_train_all[p * 128:(p + 1) * 128]
else:
    xs, ts, x_train, y_train = xs_all, ts_all, x_train_all, y_train_all

model = mnist1d_cnn("study")
params = model.init(jax.random.key(0), jnp.zeros((1, 40, 1)))["params"]
f = xj.model_fn(model, params)
results = {}
for name, method, key in [
    ("ig", xj.integrated_gradients(f, steps=16), None),
    ("grad_cam", xj.grad_cam(model, params), None),
    ("rise", rise(f, n_masks=64, grid=8, chunk_size=32), jax.random.key(1)),
]:
    results[name] = xj.attribute(method, xs, ts, batch_size=8, key=key, mesh=mesh, progress=False)
dev = xj.attribute(xj.integrated_gradients(f, steps=16), xs, ts, batch_size=8, mesh=mesh, to_numpy=False,
                   progress=False)
assert isinstance(dev, jax.Array) and dev.shape == (26, 40, 1), (type(dev), dev.shape)
results["ig_device"] = to_host(dev)
maps = np.abs(xs[..., 0])
results["drop"] = drop_increase(f, xs, maps, k=0.3, targets=ts, mesh=mesh)["drop"]
results["deletion"] = deletion_insertion(f, xs, maps, targets=ts, mesh=mesh)["deletion_curve"]
cfg = TrainConfig(steps=3, batch_size=64, warmup_steps=1, chunk=1)
state, _ = fit(model, x_train, y_train, cfg, num_classes=10, progress=False, mesh=mesh)
for i, leaf in enumerate(jax.tree.leaves(state.params)):
    results[f"param_{i}"] = to_host(leaf)
if jax.process_index() == 0:
    np.savez(out, **{k: np.asarray(v) for k, v in results.items()})
print("ALL OK", jax.process_index(), flush=True)
