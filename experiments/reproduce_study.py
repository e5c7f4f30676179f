"""Reproduce the study's table from its own Keras weights, then compare every method.

The study (Keras, 2021) reported drop / increase rates for its Grad-CAM (softmax score) and
its faulty Integrated Gradients (tf-explain: 11 equally weighted nodes including both ends,
no (x - baseline) factor, |.| over channels):
- MNIST-1D (k = 30%), from ../shared/seed/MNIST1D.h5 on the 1,000 test signals;
- HMT (k = 90%), from ../shared/seed/HMT.h5 on the 100 real tiles of
  ../shared/data/hmt-sample (a public sample of the Kather set, not the study's own test
  split, so the comparison is by bootstrap CI: does the published figure fall inside?).
Both tables show the study's convention (float32 softmax, ties by index) beside the precise
one (exact where the softmax saturates, ties as the expectation over random orders), and
the corrected IG beside the faulty one.

    python experiments/reproduce_study.py [--weights PATH] [--out DIR] [--data-dir DIR]
    python experiments/reproduce_study.py --quick    # 100 inputs, the study methods, 4 HMT tiles at 64 px
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import jax

import xai_jax as xj
from xai_jax.metrics import completeness_errors
from xai_jax.plot import rank_figure
from xai_jax.study.cli import positive_int, seed
from xai_jax.study.data.mnist1d import DEFAULT_CACHE, load_mnist1d
from xai_jax.study.models import load_keras_h5, mnist1d_cnn, vgg7
from xai_jax.study.report import (
    ALL_METRICS,
    METRIC_GROUPS,
    findings,
    shares_note,
    variants_table,
    write_json,
    write_metric_tables,
)
from xai_jax.study.suite import SuiteEntry, explain_all, measure_all, method_suite, predictions

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
# The study's published figures (../shared/seed/README.md): method -> (drop rate, increase rate)
PUBLISHED = {"Study Grad-CAM (softmax)": (0.411, 0.301), "Study IG (faulty)": (0.409, 0.173)}
PUBLISHED_HMT = {"Study Grad-CAM (softmax)": (0.503, 0.286), "Study IG (faulty)": (0.885, 0.115)}
TOLERANCE = 0.03


def reproduction_rows(summary: dict, published: dict) -> list[dict]:
    """Published vs ours under both conventions, with 95% CIs and whether each published
    figure lies inside the CI / within the tolerance of our study-convention mean."""
    rows = []
    for name, (drop, inc) in published.items():
        s = summary[name]
        row = {"method": name, "published_drop": drop, "published_increase": inc}
        for tag, suffix in (("study", "_study"), ("precise", "")):
            for metric, pub in (("drop", drop), ("increase", inc)):
                mean, lo, hi = s[metric + suffix]
                row[f"{metric}_{tag}"] = (mean, lo, hi)
                row[f"{metric}_{tag}_contains_published"] = bool(lo <= pub <= hi)
        row["within_tolerance"] = bool(abs(row["drop_study"][0] - drop) <= TOLERANCE
                                       and abs(row["increase_study"][0] - inc) <= TOLERANCE)
        rows.append(row)
    return rows


def reproduction_table(rows: list[dict]) -> list[str]:
    cell = lambda v, inside: f"{v[0]:.3f} [{v[1]:.3f}, {v[2]:.3f}]{'' if inside else ' *'}"  # noqa: E731
    lines = ["| method | drop: published | drop: study convention | drop: precise | increase: published | "
             f"increase: study convention | increase: precise | study convention within ±{TOLERANCE} |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['method']} | {r['published_drop']:.3f} | "
                     f"{cell(r['drop_study'], r['drop_study_contains_published'])} | "
                     f"{cell(r['drop_precise'], r['drop_precise_contains_published'])} | "
                     f"{r['published_increase']:.3f} | "
                     f"{cell(r['increase_study'], r['increase_study_contains_published'])} | "
                     f"{cell(r['increase_precise'], r['increase_precise_contains_published'])} | "
                     f"{'yes' if r['within_tolerance'] else 'no'} |")
    lines += ["", "Mean [95% bootstrap CI]; * = the published figure lies outside the CI."]
    return lines


def reproduce(weights: Path, out: Path, n: int | None = None, rise_masks: int | None = None,
              seed: int = 0, methods: list[str] | None = None, data_dir: Path | None = DEFAULT_CACHE,
              tie_draws: int = 64) -> dict:
    """The MNIST-1D reproduction; `methods` restricts the suite (the study methods always run)."""
    out.mkdir(parents=True, exist_ok=True)
    data = load_mnist1d(cache_dir=data_dir)
    supports_any = load_mnist1d(cache_dir=data_dir, support="any").support_test[:n]
    model = mnist1d_cnn("study")
    params = load_keras_h5(weights, model, (40, 1))
    f = xj.model_fn(model, params)
    xs, ys, supports = data.x_test[:n], data.y_test[:n], data.support_test[:n]
    preds = predictions(f, xs)
    accuracy = float((preds == ys).mean())
    suite = method_suite(model, params, ndim=1, study=True, rise_masks=rise_masks)
    order = ["Study Grad-CAM (softmax)", "Study IG (faulty)"] + [k for k in suite if not k.startswith("Study")]
    suite = {k: suite[k] for k in order if methods is None or k in methods or k in PUBLISHED}
    maps, cost = explain_all(suite, params, xs, preds, key=jax.random.key(seed))
    completeness = ({"Integrated Gradients": completeness_errors(f, xs, preds, steps=64)["relative"]}
                    if "Integrated Gradients" in suite else None)
    measured = measure_all(f, xs, ys, maps, k=0.3, supports=supports, supports_any=supports_any,
                           signed=[k for k, m in suite.items() if m.signed], conventions=("precise", "study"),
                           completeness=completeness, tie_draws=tie_draws, seed=seed)
    table = write_metric_tables(out, measured, cost)
    note = shares_note(measured)
    rank_figure(measured["summary"], ALL_METRICS, groups=METRIC_GROUPS, note=note, path=out / "ranks.png")
    rows = reproduction_rows(measured["summary"], PUBLISHED)
    result = {"accuracy": accuracy, "n": len(xs), "reproduction": rows, "summary": measured["summary"],
              "shares": measured["shares"], "ms_per_input": cost}
    lines = ["# Reproducing the study's table", "", "## MNIST-1D (k = 30%)", "",
             f"Study weights: accuracy {accuracy:.3f} on {len(xs)} test inputs.", "",
             *reproduction_table(rows), "", note, "",
             "### Every method on the study's weights (precise metrics)", "", table, "",
             "![ranks](ranks.png)", "", "### Findings", "",
             "The study concluded that Grad-CAM explains MNIST-1D better than Integrated Gradients. On its own "
             "weights, with the precise metrics, its softmax Grad-CAM against the corrected IG:", "",
             *findings(measured["summary"], "Study Grad-CAM (softmax)", "Integrated Gradients"), "",
             "and against the study's faulty IG:", "",
             *findings(measured["summary"], "Study Grad-CAM (softmax)", "Study IG (faulty)"), "",
             "### Variants", "", variants_table(measured)]
    return result, lines


def reproduce_hmt(weights: Path, tiles: Path, out: Path, *, size: int = 224, n: int | None = None,
                  ig_steps: int = 32, tie_draws: int = 16, cache_dir: Path | None = None, seed: int = 0):
    """The HMT row (k = 90%) on the shared tiles: the study's two methods, the corrected IG
    (ig_steps trapezoid steps of the logit) and Grad-CAM of the logit, both conventions."""
    from xai_jax.study.data.hmt import load_cached

    data = load_cached(tiles, size=size, cache_dir=cache_dir)
    model = vgg7("study")
    params = load_keras_h5(weights, model, (size, size, 3))
    f = xj.model_fn(model, params)
    xs, ys = data.x[:n], data.y[:n]
    preds = predictions(f, xs, batch_size=16)
    study = method_suite(model, params, ndim=2, study=True, image_size=size)
    suite = {"Study Grad-CAM (softmax)": study["Study Grad-CAM (softmax)"],
             "Study IG (faulty)": study["Study IG (faulty)"],
             "Integrated Gradients": SuiteEntry(
                 "Integrated Gradients", lambda p: xj.integrated_gradients(xj.model_fn(model, p), steps=ig_steps,
                                                                           chunk_size=None),
                 reduce=lambda a: a.sum(-1), batch_size=2, signed=True),
             "Grad-CAM": study["Grad-CAM"]}
    maps, cost = explain_all(suite, params, xs, preds, key=jax.random.key(seed))
    step = max(1, size * size // 20)
    measured = measure_all(f, xs, ys, maps, k=0.9, conventions=("precise", "study"), deletion_step=step,
                           blur_sigma=size / 20, tie_draws=tie_draws, signed=["Integrated Gradients"], seed=seed,
                           batch_size=8)
    rows = reproduction_rows(measured["summary"], PUBLISHED_HMT)
    table = write_metric_tables(out, measured, cost, class_names=None)
    rank_figure(measured["summary"], ALL_METRICS, groups=METRIC_GROUPS, note=shares_note(measured),
                path=out / "ranks_hmt.png")
    accuracy = float((preds == ys).mean())
    lines = ["## HMT (k = 90%)", "",
             f"The study's VGG-7 weights on {len(xs)} shared real tiles at {size} px: {int((preds == ys).sum())} "
             f"of {len(xs)} correct ({accuracy:.2f}). These tiles are a public sample of the Kather set, not the "
             "study's test split: the published figures are compared with our 95% bootstrap CIs.", "",
             *reproduction_table(rows), "", shares_note(measured), "",
             f"Corrected IG: {ig_steps} trapezoid steps of the logit, signed, summed over channels. Deletion/"
             "insertion in 20 steps of 5% of the pixels.", "", table, "", "![ranks](ranks_hmt.png)", "",
             "### Findings (HMT)", "",
             *findings(measured["summary"], "Study Grad-CAM (softmax)", "Integrated Gradients"), ""]
    return {"accuracy": accuracy, "n": len(xs), "size": size, "reproduction": rows,
            "summary": measured["summary"], "shares": measured["shares"], "ms_per_input": cost}, lines


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", type=Path, default=SHARED / "seed" / "MNIST1D.h5")
    p.add_argument("--hmt-weights", type=Path, default=SHARED / "seed" / "HMT.h5")
    p.add_argument("--hmt-tiles", type=Path, default=SHARED / "data" / "hmt-sample")
    p.add_argument("--out", type=Path, default=ROOT / "results" / "reproduce_study")
    p.add_argument("--n", type=positive_int, default=None, help="MNIST-1D test inputs (default: all 1,000)")
    p.add_argument("--hmt-n", type=positive_int, default=None, help="HMT tiles (default: all 100)")
    p.add_argument("--hmt-ig-steps", type=positive_int, default=32, help="corrected IG steps on HMT")
    p.add_argument("--skip-hmt", action="store_true", help="the MNIST-1D table only")
    p.add_argument("--data-dir", type=Path, default=DEFAULT_CACHE, help="MNIST-1D (and HMT tile) cache folder")
    p.add_argument("--seed", type=seed, default=0)
    p.add_argument("--quick", action="store_true",
                   help="100 inputs, the study methods only, 4 HMT tiles at 64 px (smoke test)")
    args = p.parse_args(argv)
    if not args.weights.exists():
        raise SystemExit(f"--weights {args.weights} not found: the study's MNIST1D.h5 lives in ../shared/seed/")
    n = min(args.n or 100, 100) if args.quick else args.n
    if n is not None and n > 1000:
        raise SystemExit(f"--n {n} exceeds the 1000 test inputs")
    if args.out.exists() and not args.out.is_dir():
        raise SystemExit(f"--out {args.out} exists and is not a folder")
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    result, lines = reproduce(args.weights, args.out, n, seed=args.seed, methods=[] if args.quick else None,
                              data_dir=args.data_dir, tie_draws=4 if args.quick else 64)
    hmt_ok = args.hmt_weights.exists() and args.hmt_tiles.exists()
    if not args.skip_hmt and hmt_ok:
        hmt_out = args.out / "hmt"
        hmt_out.mkdir(exist_ok=True)
        result["hmt"], hmt_lines = reproduce_hmt(
            args.hmt_weights, args.hmt_tiles, hmt_out, size=64 if args.quick else 224,
            n=4 if args.quick else args.hmt_n, ig_steps=4 if args.quick else args.hmt_ig_steps,
            tie_draws=2 if args.quick else 16, cache_dir=args.data_dir / "hmt", seed=args.seed)
        lines += ["", *[line.replace("ranks_hmt.png", "hmt/ranks_hmt.png") for line in hmt_lines]]
    elif not args.skip_hmt:
        lines += ["", f"## HMT: skipped ({args.hmt_weights} or {args.hmt_tiles} is absent)"]
    result["wall_seconds"] = time.perf_counter() - t0
    result["device"] = str(jax.devices()[0])
    lines += ["", f"Device: {result['device']}; wall time {result['wall_seconds']:.0f} s."]
    write_json(args.out / "reproduction.json", result)
    (args.out / "report.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return result


if __name__ == "__main__":
    main()
