"""Which matmul precision should methods and metrics default to? Measured, not assumed.

For precision None (JAX's default: TF32-class on recent NVIDIA GPUs, bf16 passes on TPUs,
float32 on CPUs) and "highest" (float32 everywhere), on the trained MNIST-1D study CNN and
a VGG (random weights):

- IG's relative completeness error |sum IG - (F(x) - F(0))| / |F(x) - F(0)| (64 trapezoid
  steps): median, 99th percentile, worst;
- the agreement of jit(vmap(method)) with the eager per-input call (Grad-CAM and IG), max
  relative difference (the same arithmetic should give the same maps);
- the speed of IG through attribute(..., to_numpy=False), best of 3 after a warm-up.

    python experiments/precision_study.py            # --quick: 64 inputs, a 300-step model
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from benchmark import best_of  # noqa: E402  (experiments/ is on sys.path when run as a script)
from mnist1d_job import trained_study_cnn  # noqa: E402

import xai_jax as xj
from xai_jax.study.models import vgg7
from xai_jax.study.report import markdown_table

ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=ROOT / "results" / "precision_study")
    p.add_argument("--data-dir", type=Path, default=ROOT / "data")
    p.add_argument("--n", type=int, default=1000, help="MNIST-1D test inputs")
    p.add_argument("--vgg-size", type=int, default=None, help="VGG image size (default 224 on GPU, 32 on CPU)")
    p.add_argument("--vgg-images", type=int, default=16)
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)
    if args.quick:
        args.n, args.vgg_images, args.vgg_size = 64, 2, 16
    return args


def measure(name: str, f, cam, xs, ts, precision, n_eager: int = 8, repeats: int = 3) -> dict:
    ig = xj.integrated_gradients(f, steps=64, return_delta=True, precision=precision)
    _, delta = xj.attribute(ig, xs, ts, to_numpy=False, progress=False, batch_size=16 if xs.ndim == 4 else 64)
    with jax.default_matmul_precision("highest"):  # the reference gap itself in float32
        gap = np.asarray(jax.jit(jax.vmap(lambda x, t: f(x)[t] - f(jnp.zeros_like(x))[t]))(xs, ts))
    rel = np.abs(np.asarray(delta)) / np.maximum(np.abs(gap), 1e-12)
    agree = {}
    k = min(n_eager, len(xs))
    for mname, method in (("grad_cam", cam), ("ig", xj.integrated_gradients(f, steps=16, precision=precision))):
        batched = np.asarray(jax.jit(jax.vmap(method))(xs[:k], ts[:k]))
        eager = np.stack([np.asarray(method(xs[i], ts[i])) for i in range(k)])
        scale = np.abs(eager).reshape(k, -1).max(1).reshape((k,) + (1,) * (eager.ndim - 1))
        agree[mname] = float((np.abs(batched - eager) / np.maximum(scale, 1e-30)).max())
    plain = xj.integrated_gradients(f, steps=64, precision=precision)
    seconds = best_of(lambda: xj.attribute(plain, xs, ts, to_numpy=False, progress=False,
                                           batch_size=16 if xs.ndim == 4 else 64), repeats)
    row = {"model": name, "precision": precision or "default (None)", "inputs": len(xs),
           "completeness_rel_median": float(np.median(rel)), "completeness_rel_p99": float(np.quantile(rel, 0.99)),
           "completeness_rel_max": float(rel.max()), "jit_vmap_vs_eager_max_rel": agree, "ig_seconds": seconds}
    print(f"  {name}, precision {row['precision']}: completeness median {row['completeness_rel_median']:.2e}, "
          f"p99 {row['completeness_rel_p99']:.2e}, max {row['completeness_rel_max']:.2e}; jit/vmap vs eager "
          f"{agree}; IG {seconds:.3f} s", flush=True)
    return row


def main(argv=None) -> int:
    args = parse_args(argv)
    dev = jax.devices()[0]
    on_gpu = dev.platform != "cpu"
    print(f"device: {dev.device_kind} ({dev.platform}), jax {jax.__version__}", flush=True)
    model, trained, data = trained_study_cnn(args.data_dir, quick=args.quick)  # the main job's recipe
    n = min(args.n, len(data.x_test))
    xs, ts = jnp.asarray(data.x_test[:n]), jnp.asarray(data.y_test[:n])
    size = args.vgg_size or (224 if on_gpu else 32)
    vgg = vgg7("study")
    vparams = vgg.init(jax.random.key(0), jnp.zeros((1, size, size, 3)))["params"]
    images = jnp.asarray(np.random.default_rng(0).uniform(size=(args.vgg_images, size, size, 3)), jnp.float32)
    fv = xj.model_fn(vgg, vparams)
    labels = jnp.argmax(jax.vmap(fv)(images), 1)
    rows = []
    for precision in (None, "highest"):
        k = 2 if args.quick else 8
        repeats = 1 if args.quick else 3
        rows.append(measure("MNIST-1D trained study CNN", xj.model_fn(model, trained),
                            xj.grad_cam(model, trained, precision=precision), xs, ts, precision, k, repeats))
        rows.append(measure(f"VGG {size} px", fv, xj.grad_cam(vgg, vparams, precision=precision), images, labels,
                            precision, k, repeats))
    md = markdown_table(
        ["model", "precision", "IG completeness rel. error: median / p99 / max", "jit(vmap) vs eager: Grad-CAM / IG",
         "IG s"],
        [[r["model"], r["precision"], f"{r['completeness_rel_median']:.2e} / {r['completeness_rel_p99']:.2e} / "
          f"{r['completeness_rel_max']:.2e}", f"{r['jit_vmap_vs_eager_max_rel']['grad_cam']:.1e} / "
          f"{r['jit_vmap_vs_eager_max_rel']['ig']:.1e}", f"{r['ig_seconds']:.3f}"] for r in rows])
    print(md)
    args.out.mkdir(parents=True, exist_ok=True)
    header = f"Device: {dev.device_kind}, jax {jax.__version__}\n\n"
    (args.out / f"precision_{dev.platform}.md").write_text(header + md + "\n")
    (args.out / f"precision_{dev.platform}.json").write_text(json.dumps(
        {"device": dev.device_kind, "jax": jax.__version__, "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
