"""A streamed explain + evaluate run in its own process (killed and resumed by test_stream.py).

usage: stream_check.py OUT_DIR N SHARD [--rss] [--process P --port PORT]  (2 processes)
Inputs: N MNIST-1D-shaped signals (40, 1) drawn per batch of 100 from seeded NumPy generators
(a zero-argument callable source: nothing held in memory); model: a small fixed 1-D CNN as a
plain function. Methods: saliency (unkeyed) and RISE (keyed). Prints DONE and, with --rss, the
peak RSS in MB.
"""

import resource
import sys

import jax

if "--process" in sys.argv:  # one of two processes under jax.distributed, sharing OUT_DIR
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=f"127.0.0.1:{sys.argv[sys.argv.index('--port') + 1]}",
                               num_processes=2, process_id=int(sys.argv[sys.argv.index("--process") + 1]))
import jax.numpy as jnp
import numpy as np

import xai_jax as xj

out, n, shard = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
kernel = jax.random.normal(jax.random.key(1), (5, 1, 8)) * 0.5
dense = jax.random.normal(jax.random.key(2), (8 * 40, 10)) * 0.1


def f(x):  # (40, 1) -> 10 scores
    h = jax.lax.conv_general_dilated(x[None], kernel, (1,), "SAME", dimension_numbers=("NWC", "WIO", "NWC"))[0]
    return jnp.tanh(h).reshape(-1) @ dense


def source():
    for b in range(0, n, 100):
        rng = np.random.default_rng(b)
        m = min(100, n - b)
        yield rng.normal(size=(m, 40, 1)).astype(np.float32), rng.integers(0, 10, m)


methods = {"saliency": xj.saliency(f), "rise": xj.rise(f, n_masks=64, grid=4)}
ex = xj.explain(f, source, methods, targets="labels", out_dir=f"{out}/explanations", shard_size=shard,
                progress=False)
res = xj.evaluate(f, source, ex, metrics=["drop_increase", "sparseness"], targets="labels", out_dir=f"{out}/scores",
                  progress=False)
assert res.methods == ["saliency", "rise"], res.methods
if "--rss" in sys.argv:
    print("RSS_MB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
print("DONE")
