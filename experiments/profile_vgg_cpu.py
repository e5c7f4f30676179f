"""What moves VGG IG on XLA:CPU? Each variant runs in its own process (XLA reads its flags
when the backend starts) and reports the best of 3 timed calls after a warm-up.

    python experiments/profile_vgg_cpu.py --size 64 --images 4    # IG, 64 trapezoid steps, one image per call

Variants: XLA:CPU as shipped; every convolution rewritten as an im2col matrix product
(xai_jax.attribution.loop_convs.convs_as_matmuls); XLA's experimental oneDNN custom calls;
XNNPACK graph fusion. Also the floor: the 64 gradients of one image in one vmap, alone.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = {
    "XLA:CPU as shipped": ("native", ""),
    "convolutions as im2col matmuls": ("matmul", ""),
    "oneDNN custom calls (--xla_cpu_experimental_onednn_custom_call)": (
        "native", "--xla_cpu_experimental_onednn_custom_call=true"),
    "XNNPACK graph fusion (greedy)": (
        "native", "--xla_cpu_experimental_xnn_graph_fusion_mode=XNN_GRAPH_FUSION_MODE_GREEDY"),
}


def child(size: int, images: int, mode: str, steps: int) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np

    import xai_jax as xj
    from xai_jax.attribution.loop_convs import convs_as_matmuls
    from xai_jax.study.models import vgg7

    model = vgg7("study")
    params = model.init(jax.random.key(0), jnp.zeros((1, size, size, 3)))["params"]
    f = xj.model_fn(model, params)
    if mode == "matmul":
        f = convs_as_matmuls(f)
    rng = np.random.default_rng(0)
    xs = jnp.asarray(rng.uniform(size=(images, size, size, 3)), jnp.float32)
    ts = jnp.asarray(rng.integers(0, 8, images), jnp.int32)
    ig = jax.jit(xj.integrated_gradients(f, steps=steps))
    floor = jax.jit(lambda x, t: jax.vmap(lambda a: jax.grad(lambda z: f(z)[t])(a * x))(jnp.linspace(0, 1, steps)))

    def best(fn):
        jax.block_until_ready(fn())
        out = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            jax.block_until_ready(fn())
            out = min(out, time.perf_counter() - t0)
        return out

    return {"ig_s": best(lambda: [ig(xs[i], ts[i]) for i in range(images)]),
            "floor_s": best(lambda: [floor(xs[i], ts[i]) for i in range(images)])}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--images", type=int, default=4)
    p.add_argument("--steps", type=int, default=64)
    p.add_argument("--out", type=Path, default=ROOT / "results" / "profile_vgg_cpu")
    p.add_argument("--child", nargs=2, metavar=("MODE", "UNUSED"), help=argparse.SUPPRESS)
    p.add_argument("--quick", action="store_true", help="16 px, 1 image, 4 steps, the first two variants")
    p.add_argument("--data-dir", type=Path, default=None, help="unused (no data needed)")
    args = p.parse_args(argv)
    if args.quick:
        args.size, args.images, args.steps = 16, 1, 4
    if args.child:
        print(json.dumps(child(args.size, args.images, args.child[0], args.steps)))
        return 0
    rows = {}
    variants = dict(list(VARIANTS.items())[:2]) if args.quick else VARIANTS
    for name, (mode, flags) in variants.items():
        env = dict(os.environ, XLA_FLAGS=(os.environ.get("XLA_FLAGS", "") + " " + flags).strip(), JAX_PLATFORMS="cpu")
        r = subprocess.run([sys.executable, __file__, "--size", str(args.size), "--images", str(args.images),
                            "--steps", str(args.steps), "--child", mode, "-"], env=env, capture_output=True, text=True)
        if r.returncode != 0:
            rows[name] = {"error": r.stderr.strip().splitlines()[-1] if r.stderr.strip() else "failed"}
        else:
            rows[name] = json.loads(r.stdout.strip().splitlines()[-1])
        print(f"  {name}: {rows[name]}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"vgg_cpu_{args.size}px.json").write_text(json.dumps(
        {"size": args.size, "images": args.images, "steps": args.steps, "variants": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
