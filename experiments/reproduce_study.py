"""Reproduce the study's MNIST-1D table from its own Keras weights, then compare every method.

The study (Keras, 2021) reported drop / increase rates at k = 30% on the MNIST-1D test
split for its Grad-CAM (softmax score) and its faulty Integrated Gradients (tf-explain:
11 equally weighted nodes including both ends, no (x - baseline) factor, |.| over
channels). We recompute both from ../shared/seed/MNIST1D.h5, compare them with the
published figures, and put the corrected IG and every other method beside them.

    python experiments/reproduce_study.py [--weights PATH] [--out DIR] [--data-dir DIR]
    python experiments/reproduce_study.py --quick    # 100 inputs, the two study methods only
"""

from __future__ import annotations

import argparse
from pathlib import Path

import jax

import xai_jax as xj
from xai_jax.cli import positive_int, seed
from xai_jax.compare import explain_all, measure_all, method_suite, predictions
from xai_jax.data.mnist1d import DEFAULT_CACHE, load_mnist1d
from xai_jax.metrics import completeness_errors
from xai_jax.models import load_keras_h5, mnist1d_cnn
from xai_jax.report import write_json, write_metric_tables

ROOT = Path(__file__).resolve().parents[1]
# The study's published figures (../shared/seed/README.md): method -> (drop rate, increase rate)
PUBLISHED = {"Study Grad-CAM (softmax)": (0.411, 0.301), "Study IG (faulty)": (0.409, 0.173)}
TOLERANCE = 0.03


def reproduce(weights: Path, out: Path, n: int | None = None, rise_masks: int | None = None,
              seed: int = 0, methods: list[str] | None = None, data_dir: Path | None = DEFAULT_CACHE) -> dict:
    """Runs the reproduction; `methods` restricts the suite (the two study methods always run)."""
    out.mkdir(parents=True, exist_ok=True)
    data = load_mnist1d(cache_dir=data_dir)
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
    measured = measure_all(f, xs, ys, maps, k=0.3, supports=supports, completeness=completeness)
    table = write_metric_tables(out, measured, cost)
    rows = []
    for name, (drop, inc) in PUBLISHED.items():
        s = measured["summary"][name]
        got_drop, got_inc = s["drop"][0], s["increase"][0]
        ok = abs(got_drop - drop) <= TOLERANCE and abs(got_inc - inc) <= TOLERANCE
        rows.append({"method": name, "published_drop": drop, "drop": got_drop, "published_increase": inc,
                     "increase": got_inc, "within_tolerance": ok})
    result = {"accuracy": accuracy, "n": len(xs), "reproduction": rows, "summary": measured["summary"],
              "ms_per_input": cost}
    write_json(out / "reproduction.json", result)
    lines = ["# Reproducing the study's MNIST-1D table", "",
             f"Study weights: accuracy {accuracy:.3f} on {len(xs)} test inputs.", "",
             f"| method | drop rate (published) | drop rate (ours) | increase rate (published) | "
             f"increase rate (ours) | within ±{TOLERANCE} |", "|---|---|---|---|---|---|"]
    for r in rows:
        verdict = "yes" if r["within_tolerance"] else "NO"
        lines.append(f"| {r['method']} | {r['published_drop']:.3f} | {r['drop']:.3f} | "
                     f"{r['published_increase']:.3f} | {r['increase']:.3f} | {verdict} |")
    lines += ["", "## Every method on the study's weights", "", table]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return result


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", type=Path, default=ROOT.parent / "shared" / "seed" / "MNIST1D.h5")
    p.add_argument("--out", type=Path, default=ROOT / "results" / "reproduce_study")
    p.add_argument("--n", type=positive_int, default=None, help="test inputs (default: all 1,000)")
    p.add_argument("--data-dir", type=Path, default=DEFAULT_CACHE, help="MNIST-1D cache folder")
    p.add_argument("--seed", type=seed, default=0)
    p.add_argument("--quick", action="store_true", help="100 inputs, the two study methods only (smoke test)")
    args = p.parse_args(argv)
    if not args.weights.exists():
        raise SystemExit(f"--weights {args.weights} not found: the study's MNIST1D.h5 lives in ../shared/seed/")
    n = min(args.n or 100, 100) if args.quick else args.n
    if n is not None and n > 1000:
        raise SystemExit(f"--n {n} exceeds the 1000 test inputs")
    return reproduce(args.weights, args.out, n, seed=args.seed, methods=[] if args.quick else None,
                     data_dir=args.data_dir)


if __name__ == "__main__":
    main()
