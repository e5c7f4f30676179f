"""Speed and memory of the transforms, against their floors.

The floor of a method is one batched, jitted forward(+backward) pass over the same number
of model evaluations the method performs (e.g. IG with 64 steps on N inputs: 64 N
gradient evaluations in one vmap). Ratio = method time / floor time; 1.0 is the ideal.

    python experiments/benchmark.py                 # CPU-sized defaults
    python experiments/benchmark.py --devices 8     # also: scaling over 8 forced host devices
    python experiments/benchmark.py --vgg-batch 16 --rise-masks 8000   # GPU-sized
    python experiments/benchmark.py --quick          # smoke test: 64 inputs, 8 steps, no VGG

Inputs are the MNIST-1D test signals (generated into --data-dir if absent), tiled to --n.

Compile time is measured with jit(...).lower(...).compile(); memory is XLA's temp buffer
size of the compiled program (compiled.memory_analysis()), the same figure on every backend.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

# importing jax (here through xai_jax.study.cli) is fine before XLA_FLAGS is set below: XLA reads
# the flags when the backend starts, at the first computation
from xai_jax.study.cli import positive_int

ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=positive_int, default=1000, help="MNIST-1D inputs")
    p.add_argument("--steps", type=positive_int, default=64)
    p.add_argument("--chunk", type=positive_int, default=32, help="IG chunk size")
    p.add_argument("--vgg-batch", type=positive_int, default=None, help="images (default 16 on GPU, 2 on CPU)")
    p.add_argument("--rise-masks", type=positive_int, default=None,
                   help="RISE masks (default 8000 on GPU, 400 on CPU)")
    p.add_argument("--devices", type=positive_int, default=None, help="forced host devices for the scaling run")
    p.add_argument("--repeats", type=positive_int, default=3)
    p.add_argument("--out", type=Path, default=ROOT / "results" / "benchmark")
    p.add_argument("--data-dir", type=Path, default=ROOT / "data", help="MNIST-1D cache folder")
    p.add_argument("--skip-vgg", action="store_true")
    p.add_argument("--skip-metrics", action="store_true", help="skip the metric timings (vs Quantus when installed)")
    p.add_argument("--skip-adaptive", action="store_true", help="skip error-controlled IG vs uniform rules")
    p.add_argument("--adaptive-vgg-size", type=positive_int, default=32,
                   help="VGG image size for the adaptive IG rows on CPU (224 on GPU)")
    p.add_argument("--quick", action="store_true", help="smoke test: 64 inputs, 8 steps, 1 repeat, no VGG")
    args = p.parse_args(argv)
    if args.quick:
        args.skip_metrics = True
        args.n, args.steps, args.chunk, args.repeats, args.skip_vgg = min(args.n, 64), 8, 4, 1, True
    return args


ARGS = parse_args(sys.argv[1:] if __name__ == "__main__" else [])
if ARGS.devices:
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                               f" --xla_force_host_platform_device_count={ARGS.devices}").strip()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import xai_jax as xj  # noqa: E402
from xai_jax.adapters import LayerModel  # noqa: E402
from xai_jax.attribution.feature_masks import sise  # noqa: E402
from xai_jax.attribution.grad_cam import block_ends  # noqa: E402
from xai_jax.attribution.perturbation import rise  # noqa: E402
from xai_jax.study.data.mnist1d import load_mnist1d  # noqa: E402
from xai_jax.study.models import mnist1d_cnn, vgg7  # noqa: E402
from xai_jax.study.report import markdown_table, write_json  # noqa: E402


def timed(fn, *args, repeats: int = 3) -> tuple[float, float, int | None]:
    """(best seconds over repeats, compile seconds, temp bytes) of jitted fn(*args)."""
    jitted = jax.jit(fn)
    t0 = time.perf_counter()
    compiled = jitted.lower(*args).compile()
    compile_s = time.perf_counter() - t0
    try:
        mem = compiled.memory_analysis().temp_size_in_bytes
    except Exception:  # not every backend reports it
        mem = None
    jax.block_until_ready(compiled(*args))
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        best = min(best, time.perf_counter() - t0)
    return best, compile_s, mem


def loop_timed(fn, args_list, repeats: int = 3, jit: bool = True) -> float:
    """Best time of running jitted fn over a list of argument tuples (async dispatch)."""
    jitted = jax.jit(fn) if jit else fn
    jax.block_until_ready(jitted(*args_list[0]))
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = [jitted(*a) for a in args_list]
        jax.block_until_ready(out)
        best = min(best, time.perf_counter() - t0)
    return best


def grad_floor(f, xs_eval, targets_eval):
    """Forward+backward of the target score at every evaluation point, in one vmap."""
    return lambda x, t: jax.vmap(lambda xi, ti: jax.grad(lambda z: f(z)[ti])(xi))(x, t)


def row(name, n_items, t, floor, compile_s=None, mem=None, unit="inputs"):
    print(f"  {name}: {n_items / t:.2f} {unit}/s, ratio to floor {t / floor:.3f}, "
          f"compile {compile_s or 0:.2f} s", flush=True)
    return {"name": name, "items": n_items, "unit": unit, "seconds": t, "per_second": n_items / t,
            "floor_seconds": floor, "ratio_to_floor": (t / floor) if floor else None,
            "compile_seconds": compile_s, "temp_mib": None if mem is None else mem / 2**20}


def bench_mnist1d(args) -> list[dict]:
    model = mnist1d_cnn("study")
    params = model.init(jax.random.key(0), jnp.zeros((1, 40, 1)))["params"]
    f = xj.model_fn(model, params)
    data = load_mnist1d(cache_dir=args.data_dir)
    reps = -(-args.n // len(data.y_test))
    xs = jnp.asarray(np.tile(data.x_test, (reps, 1, 1))[: args.n])
    ts = jnp.asarray(np.tile(data.y_test, reps)[: args.n])
    s = args.steps
    rows = []
    x_eval = jnp.repeat(xs, s, axis=0)
    t_eval = jnp.repeat(ts, s)
    floor, _, _ = timed(grad_floor(f, x_eval, t_eval), x_eval, t_eval, repeats=args.repeats)
    ig = xj.integrated_gradients(f, steps=s)
    t, c, m = timed(jax.vmap(ig), xs, ts, repeats=args.repeats)
    rows.append(row(f"MNIST-1D IG {s} steps", args.n, t, floor, c, m))
    igc = xj.integrated_gradients(f, steps=s, chunk_size=args.chunk)
    t, c, m = timed(jax.vmap(igc), xs, ts, repeats=args.repeats)
    rows.append(row(f"MNIST-1D IG {s} steps, chunk {args.chunk}", args.n, t, floor, c, m))
    floor1, _, _ = timed(grad_floor(f, xs, ts), xs, ts, repeats=args.repeats)
    cam = xj.grad_cam(model, params)
    t, c, m = timed(jax.vmap(cam), xs, ts, repeats=args.repeats)
    rows.append(row("MNIST-1D Grad-CAM", args.n, t, floor1, c, m))
    return rows


def bench_vgg(args, on_gpu: bool) -> list[dict]:
    model = vgg7("study")
    params = model.init(jax.random.key(0), jnp.zeros((1, 224, 224, 3)))["params"]
    f = xj.model_fn(model, params)
    b = args.vgg_batch or (16 if on_gpu else 2)
    rng = np.random.default_rng(0)
    xs = jnp.asarray(rng.uniform(size=(b, 224, 224, 3)), jnp.float32)
    ts = jnp.asarray(rng.integers(0, 8, b), jnp.int32)
    s, chunk = args.steps, args.chunk
    rows = []
    # floor: the same b * steps gradient evaluations, `steps` per jitted batch
    x_eval = jnp.repeat(xs[:1], s, axis=0)
    t_eval = jnp.repeat(ts[:1], s)
    floor = loop_timed(grad_floor(f, x_eval, t_eval), [(x_eval, t_eval)] * b, repeats=args.repeats)
    # IG one image per call (b calls), unchunked (all steps in one vmap) and chunked
    ig = jax.jit(xj.integrated_gradients(f, steps=s))
    igc = jax.jit(xj.integrated_gradients(f, steps=s, chunk_size=chunk))
    for name, fn in [(f"VGG IG {s} steps", ig), (f"VGG IG {s} steps, chunk {chunk}", igc)]:
        t0 = time.perf_counter()
        compiled = fn.lower(xs[0], ts[0]).compile()
        c = time.perf_counter() - t0
        t = loop_timed(compiled, [(xs[i], ts[i]) for i in range(b)], repeats=args.repeats, jit=False)
        rows.append(row(name, b, t, floor, c, compiled.memory_analysis().temp_size_in_bytes, "images"))
    # memory with chunking: steps 64 vs 1024
    mems = {}
    for steps in (64, 1024):
        comp = jax.jit(xj.integrated_gradients(f, steps=steps, chunk_size=chunk)).lower(xs[0], ts[0]).compile()
        mems[steps] = comp.memory_analysis().temp_size_in_bytes
    rows.append({"name": f"VGG IG chunk {chunk}: temp memory 1024 vs 64 steps", "temp_mib_64": mems[64] / 2**20,
                 "temp_mib_1024": mems[1024] / 2**20, "memory_ratio": mems[1024] / mems[64]})
    floor1, _, _ = timed(grad_floor(f, xs, ts), xs, ts, repeats=args.repeats)
    t, c, m = timed(jax.vmap(xj.grad_cam(model, params)), xs, ts, repeats=args.repeats)
    rows.append(row("VGG Grad-CAM", b, t, floor1, c, m, "images"))
    # RISE on one image, floor: the same number of plain forwards at the same batch size
    n_masks = args.rise_masks or (8000 if on_gpu else 400)
    rchunk = 250 if on_gpu else 50
    r = rise(f, n_masks=n_masks, grid=7, chunk_size=rchunk)
    key = jax.random.key(0)
    t, c, m = timed(lambda x, t_: r(x, t_, key), xs[0], ts[0], repeats=args.repeats)
    batch = jnp.repeat(xs[:1], rchunk, axis=0)
    fwd = lambda x: jax.vmap(f)(x)  # noqa: E731
    rfloor = loop_timed(fwd, [(batch,)] * (n_masks // rchunk), repeats=args.repeats)
    rows.append(row(f"VGG RISE {n_masks} masks", 1, t, rfloor, c, m, "images"))
    # SISE on one image, floor: its masked forwards in one batch + one forward+backward
    sfn = sise(model, params)
    t, c, m = timed(sfn, xs[0], ts[0], repeats=args.repeats)
    n_fwd = sum(r.grid_shape[-1] for r in block_ends(LayerModel(model, params), xs[0]))
    batch = jnp.repeat(xs[:1], n_fwd, axis=0)
    sfloor, _, _ = timed(lambda x, t_: (jax.vmap(f)(x), grad_floor(f, x[:1], t_[None])(x[:1], t_[None])),
                         batch, ts[0], repeats=args.repeats)
    rows.append(row(f"VGG SISE ({n_fwd} masked forwards)", 1, t, sfloor, c, m, "images"))
    return rows


def _trained_mnist1d(args):
    """The study-architecture CNN trained as the main job trains it (--quick: its quick recipe)."""
    from mnist1d_job import trained_study_cnn

    return trained_study_cnn(args.data_dir, quick=args.quick)


def best_of(fn, repeats: int = 3) -> float:
    """Best of `repeats` timed calls after a warm-up call (which compiles); one timed call
    when the warm-up took over 10 s (long runs vary little)."""
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    if time.perf_counter() - t0 > 10:
        repeats = 1
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        best = min(best, time.perf_counter() - t0)
    return best


def adaptive_vs_uniform(name: str, f, xs, ts, *, batch: int, repeats: int, tol: float = 1e-2, atol: float = 1e-6,
                        max_uniform: int = 4096, chunk: int = 256) -> dict:
    """Error-controlled IG against the cheapest uniform trapezoid rule (n = 8, 16, ..., max_uniform)
    that meets |sum IG - (F(x) - F(b))| <= max(tol |F(x) - F(b)|, atol) on every input; both
    through attribute(..., batch_size=batch, to_numpy=False), timed after a warm-up call."""
    gap = jax.jit(jax.vmap(lambda x, t: f(x)[t] - f(jnp.zeros_like(x))[t]))
    bound = np.maximum(tol * np.abs(np.asarray(gap(xs, ts))), atol)
    n_in = len(xs)

    def run(method):
        return xj.attribute(method, xs, ts, batch_size=batch, to_numpy=False, progress=False)

    uniform, tried = None, []
    n = 8
    while n <= max_uniform:
        method = xj.integrated_gradients(f, steps=n, return_delta=True,
                                         chunk_size=None if n * batch <= 64 * 1024 else chunk)
        _, delta = run(method)
        fails = int((np.abs(np.asarray(delta)) > bound).sum())
        tried.append({"steps": n, "inputs_over_bound": fails})
        print(f"  {name}: uniform trapezoid {n} steps: {fails} of {n_in} inputs over the bound", flush=True)
        if fails == 0:
            uniform = {"steps": n, "seconds": best_of(lambda m=method: run(m), repeats), "gradients": n * n_in}
            break
        n *= 2
    auto = xj.integrated_gradients(f, steps="auto", tol=tol, atol=atol, return_delta=True)
    _, delta = run(auto)
    used = np.concatenate([np.asarray(jax.jit(jax.vmap(auto.steps_used))(xs[i:i + batch], ts[i:i + batch]))
                           for i in range(0, n_in, batch)])
    hit_max = used + 8 > 1024
    over = np.abs(np.asarray(delta)) > bound
    adaptive = {"seconds": best_of(lambda: run(auto), repeats), "gradients": int(used.sum()),
                "gradients_median": float(np.median(used)), "gradients_max": int(used.max()),
                "inputs_over_bound": int(over.sum()),
                "inputs_over_bound_not_at_max_steps": int((over & ~hit_max).sum()),
                "inputs_at_max_steps": int(hit_max.sum())}
    out = {"name": f"{name}: error-controlled IG (tol {tol}) vs cheapest uniform trapezoid", "inputs": n_in,
           "batch_size": batch, "uniform_search": tried, "uniform": uniform, "adaptive": adaptive, "goal_speedup": 2.0}
    if uniform is None:
        print(f"  {name}: no uniform rule up to {max_uniform} steps meets the bound on every input", flush=True)
    else:
        out["speedup"] = uniform["seconds"] / adaptive["seconds"]
        out["meets_goal"] = bool(out["speedup"] >= 2.0)
        print(f"  {name}: uniform {uniform['steps']} steps {uniform['seconds']:.3f} s ({uniform['gradients']} "
              f"gradients) vs adaptive {adaptive['seconds']:.3f} s ({adaptive['gradients']} gradients, median "
              f"{adaptive['gradients_median']:.0f}, max {adaptive['gradients_max']} per input): "
              f"{out['speedup']:.2f}x (goal >= 2x)", flush=True)
    return out


def bench_adaptive_ig(args, on_gpu: bool) -> list[dict]:
    """Error-controlled IG on --n (at most 1,000) test inputs of the trained MNIST-1D model and on
    16 images of a VGG (random weights; 224 px on GPU, --adaptive-vgg-size px on CPU)."""
    model, params, data = _trained_mnist1d(args)
    n = min(args.n, len(data.x_test))
    xs, ts = jnp.asarray(data.x_test[:n]), jnp.asarray(data.y_test[:n])
    rows = [adaptive_vs_uniform("MNIST-1D trained study CNN", xj.model_fn(model, params), xs, ts, batch=64,
                                repeats=args.repeats, max_uniform=256 if args.quick else 4096)]
    if not args.skip_vgg:
        size = 224 if on_gpu else args.adaptive_vgg_size
        vgg = vgg7("study")
        vparams = vgg.init(jax.random.key(0), jnp.zeros((1, size, size, 3)))["params"]
        rng = np.random.default_rng(0)
        images = jnp.asarray(rng.uniform(size=(16, size, size, 3)), jnp.float32)
        fv = xj.model_fn(vgg, vparams)
        labels = jnp.argmax(jax.vmap(fv)(images), 1)
        rows.append(adaptive_vs_uniform(f"VGG {size} px (random weights), 16 images", fv, images, labels,
                                        batch=16 if on_gpu else 4, repeats=max(1, args.repeats - 1),
                                        chunk=32))
    return rows


def bench_attribute_overhead(args, on_gpu: bool) -> list[dict]:
    """attribute(..., to_numpy=False) at its default batch size against one bare jit(vmap(method))
    call over the same device-resident inputs (goal on GPU: <= 1.2x), and attribute with NumPy
    results. MNIST-1D: 20,000 inputs on GPU (--n on CPU); VGG: 64 images at 224 px on GPU
    (--vgg-batch at 64 px on CPU)."""
    model = mnist1d_cnn("study")
    params = model.init(jax.random.key(0), jnp.zeros((1, 40, 1)))["params"]
    data = load_mnist1d(cache_dir=args.data_dir)
    n = 20000 if on_gpu else args.n
    reps = -(-n // len(data.y_test))
    cases = [("MNIST-1D", model, params, jnp.asarray(np.tile(data.x_test, (reps, 1, 1))[:n]),
              jnp.asarray(np.tile(data.y_test, reps)[:n]))]
    if not args.skip_vgg:
        size, b = (224, 64) if on_gpu else (64, args.vgg_batch or 8)
        vgg = vgg7("study")
        vparams = vgg.init(jax.random.key(0), jnp.zeros((1, size, size, 3)))["params"]
        rng = np.random.default_rng(0)
        cases.append((f"VGG {size} px", vgg, vparams, jnp.asarray(rng.uniform(size=(b, size, size, 3)), jnp.float32),
                      jnp.asarray(rng.integers(0, 8, b), jnp.int32)))
    rows = []
    for label, m, p, xs, ts in cases:
        f = xj.model_fn(m, p)
        ig = xj.integrated_gradients(f, steps=64, rule="gauss_legendre")
        for mname, method in [("Grad-CAM", xj.grad_cam(m, p)), ("IG 64 Gauss-Legendre steps", ig)]:
            bare = jax.jit(jax.vmap(method))
            t_bare = best_of(lambda: bare(xs, ts), args.repeats)
            t_dev = best_of(lambda: xj.attribute(method, xs, ts, to_numpy=False, progress=False), args.repeats)
            t_np = best_of(lambda: xj.attribute(method, xs, ts, progress=False), args.repeats)
            r = {"name": f"{label} {mname}, {len(xs)} inputs: attribute vs bare jit(vmap)", "bare_s": t_bare,
                 "attribute_device_s": t_dev, "attribute_numpy_s": t_np, "ratio_device": t_dev / t_bare,
                 "ratio_numpy": t_np / t_bare, "goal_ratio_device": 1.2}
            rows.append(r)
            print(f"  {r['name']}: bare {t_bare * 1e3:.1f} ms, attribute(to_numpy=False) {t_dev * 1e3:.1f} ms "
                  f"({r['ratio_device']:.2f}x), attribute -> NumPy {t_np * 1e3:.1f} ms ({r['ratio_numpy']:.2f}x)",
                  flush=True)
    return rows


def bench_captum(args, on_gpu: bool) -> list[dict]:
    """Side by side with Captum 0.9 on the same weights (transplanted to PyTorch by
    experiments/peers/transplant.py), when torch and captum are installed: IG with 64
    Gauss-Legendre steps on MNIST-1D (20,000 inputs on GPU, --n on CPU) and on the VGG
    (64 images at 224 px on GPU; --vgg-batch at 64 px on CPU), Grad-CAM on the VGG. Ours
    through attribute() with NumPy results; Captum's times include .cpu()."""
    import importlib.util

    missing = [m for m in ("torch", "captum") if importlib.util.find_spec(m) is None]
    if missing:
        print(f"  Captum rows skipped: {', '.join(missing)} not installed (pip install -e '.[peers]')", flush=True)
        return []
    import torch
    from captum.attr import IntegratedGradients, LayerGradCam
    from peers import transplant

    dev = "cuda" if on_gpu and torch.cuda.is_available() else "cpu"
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True  # torch's default speed mode

    def torch_best(fn):
        fn()
        if dev == "cuda":
            torch.cuda.synchronize()
        best = float("inf")
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            fn()
            if dev == "cuda":
                torch.cuda.synchronize()
            best = min(best, time.perf_counter() - t0)
        return best

    data = load_mnist1d(cache_dir=args.data_dir)
    n = 20000 if on_gpu else args.n
    reps = -(-n // len(data.y_test))
    xs = np.tile(data.x_test, (reps, 1, 1))[:n].astype(np.float32)
    ts = np.tile(data.y_test, reps)[:n].astype(np.int32)
    model = mnist1d_cnn("study")
    params = model.init(jax.random.key(0), jnp.zeros((1, 40, 1)))["params"]
    cases = [("MNIST-1D", model, params, xs, ts, 20000 if on_gpu else 2000)]
    if not args.skip_vgg:
        size, b = (224, 64) if on_gpu else (64, args.vgg_batch or 4)
        vgg = vgg7("study")
        vparams = vgg.init(jax.random.key(0), jnp.zeros((1, size, size, 3)))["params"]
        rng = np.random.default_rng(0)
        cases.append((f"VGG {size} px", vgg, vparams, rng.uniform(size=(b, size, size, 3)).astype(np.float32),
                      rng.integers(0, 8, b).astype(np.int32), 64 * 4 if on_gpu else 64))
    rows = []
    for label, m, p, x, t, internal in cases:
        twin = transplant.from_flax(m, p).to(dev)
        x_t = torch.as_tensor(transplant.to_channels_first(x)).to(dev)
        t_t = torch.as_tensor(t.astype(np.int64)).to(dev)
        f = xj.model_fn(m, p)
        jobs = [("IG 64 Gauss-Legendre steps", xj.integrated_gradients(f, steps=64, rule="gauss_legendre"),
                 lambda: IntegratedGradients(twin).attribute(x_t, target=t_t, n_steps=64, method="gausslegendre",
                                                             internal_batch_size=internal).cpu())]
        if label.startswith("VGG"):
            last = [name for name, _ in transplant.weight_layers(twin)][-2]
            jobs.append(("Grad-CAM", xj.grad_cam(m, p),
                         lambda: LayerGradCam(twin, getattr(twin, last)).attribute(x_t, target=t_t).cpu()))
        for name, ours, theirs in jobs:
            mine = best_of(lambda: xj.attribute(ours, x, t, progress=False), args.repeats)
            peer = torch_best(theirs)
            r = {"name": f"{label} {name}, {len(x)} inputs", "ours_s": mine, "captum_s": peer,
                 "speedup_vs_captum": peer / mine, "torch_device": dev}
            rows.append(r)
            print(f"  {r['name']}: xai_jax {mine:.3f} s, Captum {peer:.3f} s: {r['speedup_vs_captum']:.2f}x",
                  flush=True)
    return rows


def bench_devices(args) -> list[dict]:
    from xai_jax.distributed import data_mesh

    model = mnist1d_cnn("study")
    params = model.init(jax.random.key(0), jnp.zeros((1, 40, 1)))["params"]
    ig = xj.integrated_gradients(xj.model_fn(model, params), steps=args.steps)
    rng = np.random.default_rng(0)
    xs = rng.normal(size=(args.n, 40, 1)).astype(np.float32)
    ts = rng.integers(0, 10, args.n)
    out = []
    for n_dev in sorted({1, args.devices}):
        mesh = None if n_dev == 1 else data_mesh(n_dev)
        xj.attribute(ig, xs[:200], ts[:200], batch_size=200, mesh=mesh, progress=False)
        best = float("inf")
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            xj.attribute(ig, xs, ts, batch_size=200, mesh=mesh, progress=False)
            best = min(best, time.perf_counter() - t0)
        out.append({"name": f"MNIST-1D IG {args.steps} steps via attribute, {n_dev} device(s)",
                    "devices": n_dev, "seconds": best, "per_second": args.n / best})
    for r in out:
        r["speedup"] = out[0]["seconds"] / r["seconds"]
    return out


def bench_metrics(args) -> dict:
    """The metric families on --n MNIST-1D inputs (study CNN, saliency maps): our run time (compile
    excluded), the perturbation curves' forward-pass floors, and Quantus's time when installed
    (experiments/compare_metrics_peers.py holds the shared setup and the Quantus side)."""
    if args.skip_metrics:
        return {}
    import compare_metrics_peers as peers_cmp

    config = peers_cmp.config_for(False)
    missing = peers_cmp.missing_peers()
    print("metrics" + (f" (Quantus ratios skipped: {', '.join(missing)} not installed; see "
                       "experiments/compare_metrics_peers.py)" if missing else " vs Quantus"), flush=True)
    s = peers_cmp.setup(config, args.data_dir, n=args.n)
    return peers_cmp.speed(s, config, quick=False, repeats=args.repeats)["results"]


def metrics_table(results: dict) -> str:
    header = ["metric", "ours s (compile excluded)", "Quantus s", "speed-up", "goal", "ratio to its floor"]
    table = []
    for name, r in results.items():
        peer = r.get("quantus_s")
        table.append([name, f"{r['ours_run_s']:.3f}", f"{peer:.2f}" if peer else "not installed",
                      f"{r['speedup_vs_quantus']:.1f}x" if peer else "",
                      f">= {r['goal_speedup']:.0f}x" if r.get("goal_speedup") else "report",
                      (f"{r['ratio_to_floor']:.2f} (forward floor, goal <= 1.2)" if "forward_floor_s" in r else
                       f"{r['ratio_to_floor']:.2f} (gradient floor, {r['maps_per_call']} maps per call; Quantus / "
                       f"floor = {r['speedup_bound_at_floor']:.1f}x, / best floor over call sizes = "
                       f"{r['speedup_bound_at_best_floor']:.1f}x)" if "speedup_bound_at_floor" in r else
                       f"{r['ratio_to_floor']:.2f} (gradient floor)" if "ratio_to_floor" in r else "")])
    return markdown_table(header, table)


def main():
    args = ARGS
    device = jax.devices()[0]
    on_gpu = device.platform != "cpu"
    print(f"device: {device.device_kind} ({device.platform}), {len(jax.devices())} device(s), jax {jax.__version__}")
    rows = bench_mnist1d(args)
    if not args.skip_vgg:
        rows += bench_vgg(args, on_gpu)
    print("attribute vs bare jit(vmap), device-resident inputs", flush=True)
    overhead = bench_attribute_overhead(args, on_gpu)
    print("vs Captum (same weights, transplanted)", flush=True)
    captum = bench_captum(args, on_gpu)
    adaptive = []
    if not args.skip_adaptive:
        print("error-controlled IG vs the cheapest uniform trapezoid rule meeting the same tolerance", flush=True)
        adaptive = bench_adaptive_ig(args, on_gpu)
    scaling = bench_devices(args) if args.devices else []
    metric_rows = bench_metrics(args)
    header = ["benchmark", "items/s", "ratio to floor", "compile s", "temp MiB"]
    table = []
    for r in rows:
        if "memory_ratio" in r:
            table.append([r["name"], "", f"memory ratio {r['memory_ratio']:.3f}", "",
                          f"{r['temp_mib_64']:.1f} -> {r['temp_mib_1024']:.1f}"])
        else:
            table.append([r["name"], f"{r['per_second']:.2f} {r['unit']}/s",
                          f"{r['ratio_to_floor']:.3f}" if r["ratio_to_floor"] else "",
                          f"{r['compile_seconds']:.2f}" if r["compile_seconds"] is not None else "",
                          f"{r['temp_mib']:.1f}" if r.get("temp_mib") is not None else ""])
    for r in scaling:
        table.append([r["name"], f"{r['per_second']:.1f} inputs/s", f"speedup {r['speedup']:.2f}x", "", ""])
    md = markdown_table(header, table)
    ig = {r["name"]: r for r in rows}
    unchunked = next(r for n, r in ig.items() if n.startswith("MNIST-1D IG") and "chunk" not in n)
    chunked = next(r for n, r in ig.items() if n.startswith("MNIST-1D IG") and "chunk" in n)
    md += (f"\nMNIST-1D chunked / unchunked IG time: {chunked['seconds'] / unchunked['seconds']:.3f}\n")
    md += "\n" + markdown_table(
        ["attribute vs bare jit(vmap)", "bare ms", "to_numpy=False ms", "ratio (goal <= 1.2 on GPU)", "NumPy ms",
         "ratio"],
        [[r["name"], f"{r['bare_s'] * 1e3:.1f}", f"{r['attribute_device_s'] * 1e3:.1f}", f"{r['ratio_device']:.2f}",
          f"{r['attribute_numpy_s'] * 1e3:.1f}", f"{r['ratio_numpy']:.2f}"] for r in overhead])
    if captum:
        md += "\n" + markdown_table(["vs Captum", "xai_jax s", "Captum s", "speed-up"],
                                    [[r["name"], f"{r['ours_s']:.3f}", f"{r['captum_s']:.3f}",
                                      f"{r['speedup_vs_captum']:.2f}x"] for r in captum])
    else:
        md += "\nCaptum rows: not run (torch / captum not installed).\n"
    if adaptive:
        md += "\n" + markdown_table(
            ["error-controlled IG", "uniform steps", "uniform s", "adaptive s", "adaptive gradients (median / max)",
             "speed-up (goal >= 2)"],
            [[r["name"], str(r["uniform"]["steps"]) if r["uniform"] else "none <= 4096",
              f"{r['uniform']['seconds']:.3f}" if r["uniform"] else "", f"{r['adaptive']['seconds']:.3f}",
              f"{r['adaptive']['gradients']} ({r['adaptive']['gradients_median']:.0f} / "
              f"{r['adaptive']['gradients_max']})", f"{r['speedup']:.2f}x" if "speedup" in r else ""]
             for r in adaptive])
    if metric_rows:
        md += "\n" + metrics_table(metric_rows)
    print(md)
    args.out.mkdir(parents=True, exist_ok=True)
    tag = device.platform + (f"_{args.devices}dev" if args.devices else "")
    write_json(args.out / f"benchmark_{tag}.json", {"device": str(device.device_kind), "platform": device.platform,
                                                    "jax": jax.__version__, "rows": rows, "scaling": scaling,
                                                    "metrics": metric_rows, "attribute_overhead": overhead,
                                                    "adaptive_ig": adaptive, "captum": captum})
    (args.out / f"benchmark_{tag}.md").write_text(f"Device: {device.device_kind}\n\n" + md)


if __name__ == "__main__":
    main()
