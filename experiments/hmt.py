"""HMT (Kather 2016 colorectal histology) end to end.

Default (the embedded default): the study's VGG-7 weights (../shared/seed/HMT.h5) on the
100 real tiles of ../shared/data/hmt-sample, every method and metric (drop/increase at
k = 90%), overlays per class and the metric table in results/hmt/.

With the full data (see docs/study.md, "Data", for how to get the zip):

    python experiments/hmt.py --data data/hmt/Kather_texture_2016_image_tiles_5000.zip --train

trains a VGG-7 (preset "vgg7") with flips, 90-degree rotations and colour jitter on a
stratified 90/10 split, reports the test accuracy, and explains the test split.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import jax
import numpy as np

import xai_jax as xj
from xai_jax.plot import deletion_insertion_curves, images_grid, rank_figure
from xai_jax.study.cli import positive_int, seed
from xai_jax.study.data.augment import histology_augment
from xai_jax.study.data.hmt import CLASSES, load_cached, stratified_split
from xai_jax.study.models import load_keras_h5, vgg7
from xai_jax.study.report import (
    ALL_METRICS,
    METRIC_GROUPS,
    findings,
    shares_note,
    variants_table,
    write_json,
    write_metric_tables,
)
from xai_jax.study.suite import explain_all, measure_all, method_suite, predictions
from xai_jax.study.train import TrainConfig, evaluate, fit

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=SHARED / "data" / "hmt-sample",
                   help="a folder of tiles or the Kather 2016 zip")
    p.add_argument("--weights", type=Path, default=SHARED / "seed" / "HMT.h5", help="the study's Keras weights")
    p.add_argument("--train", action="store_true", help="train a VGG-7 on --data instead of loading --weights")
    p.add_argument("--preset", default="vgg7", choices=["vgg7", "study"])
    p.add_argument("--size", type=positive_int, default=None,
                   help="tile size (default 224 with --weights, 150 to train; at least 8)")
    p.add_argument("--steps", type=positive_int, default=3000)
    p.add_argument("--batch-size", type=positive_int, default=64)
    p.add_argument("--n", type=positive_int, default=None,
                   help="tiles explained (default: all on GPU, 8 (one per class) on CPU)")
    p.add_argument("--full", action="store_true", help="full method settings even on CPU")
    p.add_argument("--out", type=Path, default=ROOT / "results" / "hmt")
    p.add_argument("--ckpt-dir", type=Path, default=ROOT / "checkpoints" / "hmt")
    p.add_argument("--data-dir", "--cache-dir", dest="cache_dir", type=Path, default=ROOT / "data" / "hmt",
                   help="cache folder for decoded tiles")
    p.add_argument("--seed", type=seed, default=0)
    p.add_argument("--quick", action="store_true", help="64-pixel tiles, 2 tiles explained (smoke test)")
    p.add_argument("--methods", choices=("default", "all"), default="default",
                   help="default: compare.DEFAULT_METHODS; all: also the rest of the CAM family, Guided IG, "
                        "Expected Gradients (baselines: 32 tiles of --data), Blur IG and XRAI")
    args = p.parse_args(argv)
    if args.quick:
        args.size, args.n = min(args.size or 64, 64), min(args.n or 2, 2)
        args.steps = min(args.steps, 20)
    if args.size is not None and args.size < 8:
        p.error(f"--size must be >= 8 (the tile readers' minimum), got {args.size}")
    return args


def pick_per_class(ys: np.ndarray, n: int) -> np.ndarray:
    """Up to n indices, round-robin over classes, so every class is represented."""
    by_class = [list(np.flatnonzero(ys == c)) for c in np.unique(ys)]
    out = []
    while len(out) < n and any(by_class):
        for idx in by_class:
            if idx and len(out) < n:
                out.append(idx.pop(0))
    return np.sort(np.asarray(out, int))


def main(argv=None) -> dict:
    args = parse_args(argv)
    t0 = time.perf_counter()
    on_gpu = jax.devices()[0].platform != "cpu"
    args.out.mkdir(parents=True, exist_ok=True)
    size = args.size or (150 if args.train else 224)
    if not args.data.exists():
        raise SystemExit(f"--data {args.data} not found. {xj_how_to_get()}")
    data = load_cached(args.data, size=size, cache_dir=args.cache_dir)
    result: dict = {"data": str(args.data), "tiles": int(len(data.y)), "size": size, "device": str(jax.devices()[0])}
    if args.train:
        model = vgg7(args.preset)
        try:
            train_idx, test_idx = stratified_split(data.y, 0.1, seed=args.seed)
        except ValueError as e:  # a class with one tile cannot be in both splits
            counts = np.bincount(data.y, minlength=len(CLASSES))
            few = ", ".join(f"{CLASSES[c]}: {counts[c]} tile" for c in np.flatnonzero(counts == 1))
            raise SystemExit(f"--train needs at least 2 tiles of every class in --data {args.data} (one for "
                             f"training, one for testing); too few: {few or e}") from e
        cfg = TrainConfig(steps=args.steps, batch_size=min(args.batch_size, len(train_idx)),
                          learning_rate=1e-3, warmup_steps=min(200, args.steps // 10 + 1), seed=args.seed)
        state, hist = fit(model, data.x[train_idx], data.y[train_idx], cfg, num_classes=8,
                          augment=histology_augment, ckpt_dir=args.ckpt_dir / f"{args.preset}_{size}",
                          input_shape=(size, size, 3))
        params = state.params
        ev = evaluate(model, params, data.x[test_idx], data.y[test_idx], (size, size, 3))
        result["training"] = {"preset": args.preset, "steps": cfg.steps, "test_accuracy": ev["accuracy"],
                              "train_seconds": hist["train_seconds"], "n_train": int(len(train_idx)),
                              "n_test": int(len(test_idx))}
        print(f"[{args.preset}] test accuracy {ev['accuracy']:.4f} on {len(test_idx)} tiles")
        xs, ys = data.x[test_idx], data.y[test_idx]
    else:
        if not args.weights.exists():
            raise SystemExit(f"--weights {args.weights} not found (the study's HMT.h5 lives in ../shared/seed/)")
        model = vgg7("study")
        params = load_keras_h5(args.weights, model, (size, size, 3))
        xs, ys = data.x, data.y
    f = xj.model_fn(model, params)
    preds = predictions(f, xs, batch_size=16)
    result["accuracy_on_explained_set"] = float((preds == ys).mean())
    result["correct_on_explained_set"] = int((preds == ys).sum())
    n = args.n or (len(xs) if on_gpu else 8)
    idx = pick_per_class(ys, n)
    xs, ys, preds = xs[idx], ys[idx], preds[idx]
    light = not on_gpu and not args.full
    study = "training" not in result  # the study's weights: its own Grad-CAM and faulty IG beside ours
    suite = method_suite(model, params, ndim=2, light=light, image_size=size, study=study, methods=args.methods,
                         references=data.x[:32])
    maps, cost = explain_all(suite, params, xs, preds, key=jax.random.key(args.seed))
    step = max(1, size * size // 20)  # 20 deletion/insertion steps of 5% of the pixels
    tie_draws = 4 if args.quick else (64 if on_gpu else 8)
    measured = measure_all(f, xs, ys, maps, k=0.9, deletion_step=step, blur_sigma=size / 20, batch_size=4,
                           conventions=("precise", "study") if study else ("precise",), tie_draws=tie_draws,
                           signed=[k for k, m in suite.items() if m.signed], seed=args.seed)
    table = write_metric_tables(args.out, measured, cost, class_names=CLASSES)
    note = shares_note(measured)
    rank_figure(measured["summary"], ALL_METRICS, groups=METRIC_GROUPS, note=note, path=args.out / "ranks.png")
    deletion_insertion_curves(measured["curves"], path=args.out / "deletion_insertion.png")
    show = pick_per_class(ys, min(len(ys), 8))
    images_grid(xs[show], {k: v[show] for k, v in maps.items()},
                labels=[f"true {CLASSES[ys[i]]}, pred {CLASSES[preds[i]]}" for i in show],
                sign={k: "all" if m.signed else "absolute_value" for k, m in suite.items()},
                path=args.out / "overlays.png")
    result.update({"n_explained": int(len(xs)), "light_settings": light, "ms_per_input": cost,
                   "summary": measured["summary"], "per_class": measured["per_class"], "shares": measured["shares"],
                   "wall_seconds": time.perf_counter() - t0})
    write_json(args.out / "metrics.json", result)
    lines = ["# HMT: explanation methods compared", "",
             f"Data: {args.data} ({result['tiles']} tiles at {size}x{size}); device {result['device']}; "
             f"wall time {result['wall_seconds']:.0f} s.", ""]
    if "training" in result:
        tr = result["training"]
        lines += [f"Trained {tr['preset']} for {tr['steps']} steps in {tr['train_seconds']:.0f} s: test accuracy "
                  f"{tr['test_accuracy']:.4f} on {tr['n_test']} held-out tiles.", ""]
    else:
        lines += [f"The study's weights: {result['correct_on_explained_set']} of {result['tiles']} tiles "
                  f"classified correctly.", ""]
    lines += [f"Methods on {len(xs)} tiles{' (light CPU settings, see compare.method_suite)' if light else ''}; "
              "drop/increase at k = 90% with the predicted class; deletion/insertion in 20 steps of 5% of the "
              "pixels; mean with bootstrap 95% CI (precise convention: exact where the float32 softmax "
              f"saturates, ties as the expectation over {tie_draws} random orders).", "", table, "", note, "",
              "![ranks](ranks.png)", "", "## Findings", "",
              *findings(measured["summary"], "Grad-CAM", "Integrated Gradients"), "",
              "![overlays](overlays.png)", "", "![deletion and insertion](deletion_insertion.png)", ""]
    if study:
        lines += ["## Variants (the study's convention; signed maps)", "", variants_table(measured), ""]
    (args.out / "report.md").write_text("\n".join(lines))
    print(table)
    print(f"wall time {result['wall_seconds']:.1f} s; results in {args.out}")
    return result


def xj_how_to_get() -> str:
    from xai_jax.study.data.hmt import HOW_TO_GET

    return HOW_TO_GET


if __name__ == "__main__":
    main()
