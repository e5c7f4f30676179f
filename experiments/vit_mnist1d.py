"""A transformer end to end: a small linen ViT (xai_jax.study.models.ViT1D) trained with `fit` on
MNIST-1D patches, explained by CAMs on its token grid and by Layer IG on its patch embeddings.

The CAM layer is the last block's norm1, and `reshape=patch_grid` drops the class token,
so each of the 10 patches (4 samples each) is one grid position; maps are upsampled to the
40 samples. Layer Integrated Gradients with respect to the patch embeddings (the "embed"
Dense) gives (10 tokens, dim) per input; |its sum over units| is one value per patch.
Reported: test accuracy, and the localisation AUROC of Grad-CAM, LayerCAM and Layer IG
against the digit support (as the main job reports it for the CNN). No threshold is set.

    .venv/bin/python experiments/vit_mnist1d.py            # ~1-2 min on 2 CPU cores
    .venv/bin/python experiments/vit_mnist1d.py --quick    # seconds; same code path
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import xai_jax as xj  # noqa: E402
from xai_jax.study.cli import positive_int  # noqa: E402
from xai_jax.study.data.augment import random_circular_shift  # noqa: E402
from xai_jax.study.data.mnist1d import DEFAULT_CACHE, load_mnist1d  # noqa: E402
from xai_jax.study.models import ViT1D, patch_grid  # noqa: E402
from xai_jax.study.report import write_json  # noqa: E402
from xai_jax.study.train import TrainConfig, fit  # noqa: E402
from xai_jax.study.train import evaluate as accuracy_of  # noqa: E402


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=ROOT / "results" / "vit_mnist1d")
    p.add_argument("--data-dir", type=Path, default=DEFAULT_CACHE)
    p.add_argument("--steps", type=positive_int, default=4000)
    p.add_argument("--n-explain", type=positive_int, default=1000)
    p.add_argument("--quick", action="store_true", help="tiny run (same code path)")
    args = p.parse_args(argv)
    steps, n_explain = (30, 8) if args.quick else (args.steps, args.n_explain)

    data = load_mnist1d(cache_dir=args.data_dir)
    size = dict(dim=16, depth=1, heads=2, mlp_dim=32) if args.quick else dict(dim=64, depth=3, heads=4, mlp_dim=128)
    model = ViT1D(length=40, patch=4, num_classes=data.num_classes, **size)
    t0 = time.perf_counter()
    state, _ = fit(model, data.x_train, data.y_train, TrainConfig(steps=steps, chunk=min(200, steps)),
                   num_classes=data.num_classes, augment=random_circular_shift, progress=not args.quick)
    train_s = time.perf_counter() - t0
    acc = accuracy_of(model, state.params, data.x_test, data.y_test, (40, 1))["accuracy"]

    xs, ts = jnp.asarray(data.x_test[:n_explain]), jnp.asarray(data.y_test[:n_explain])
    layer = f"block_{model.depth - 1}/norm1"
    results = {"test_accuracy": float(acc), "train_steps": steps, "train_seconds": round(train_s, 1),
               "layer": layer, "n_explained": int(xs.shape[0]), "localisation_auroc": {}}
    # the token model's CAMs through explain/evaluate: layer outputs (tokens, dim) on the patch grid
    cams = {name: method(model, state.params, layer=layer, reshape=patch_grid)
            for name, method in (("Grad-CAM", xj.grad_cam), ("LayerCAM", xj.layer_cam))}
    ex = xj.explain(xj.Model(model, state.params), np.asarray(xs), cams, np.asarray(ts), progress=False)
    maps = dict(ex)
    res = xj.evaluate(xj.Model(model, state.params), np.asarray(xs), ex, metrics=["localisation_auroc"],
                      support=data.support_test[:n_explain], progress=False)
    for name in cams:
        results["localisation_auroc"][name] = res.mean(name, "localisation_auroc")

    # Layer IG on the patch embeddings (Captum's LayerIntegratedGradients on token embeddings):
    # (10 tokens, dim) per input, summed over units, one value per 4-sample patch
    lig = xj.layer_integrated_gradients(xj.Model(model, state.params), layer="embed", steps=32,
                                        rule="gauss_legendre")
    tokens = np.asarray(xj.attribute(lig, xs, ts))
    maps["Layer IG (embed)"] = np.repeat(np.abs(tokens.sum(-1)), model.patch, axis=1)
    auroc = xj.metrics.localisation_auroc(maps["Layer IG (embed)"], data.support_test[:n_explain])
    results["localisation_auroc"]["Layer IG (embed)"] = auroc.mean

    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "results.json", results)
    from xai_jax.plot import signals_grid
    signals_grid(np.asarray(xs[:6]), {k: v[:6] for k, v in maps.items()},
                 supports=data.support_test[:6], path=args.out / "vit_token_cams.png")
    print(f"ViT1D: test accuracy {acc:.4f} after {steps} steps ({train_s:.0f} s); localisation AUROC "
          + ", ".join(f"{k} {v:.3f}" for k, v in results["localisation_auroc"].items())
          + f"; results in {args.out}")
    return results


if __name__ == "__main__":
    main()
