"""Occlusion against Captum 0.9's `Occlusion`, with strides that do not divide the input:
both end each axis with a truncated window, so every position is explained.

Same weights on both sides (experiments/peers/transplant.py): the study CNN on 1-D signals
and a VGG on 20 x 20 images, random weights, baseline 0, the logit of the target. Maps are
compared relative to the largest |attribution| of each case. The full run writes the Captum
values to experiments/peers/reference_occlusion.json; tests/methods/test_occlusion_reference.py
checks ours against them without Captum installed.

    .venv-peers/bin/python experiments/compare_occlusion_captum.py      # see compare_metrics_peers.py
"""

from __future__ import annotations

import importlib.metadata
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from peers import cli

import xai_jax as xj
from xai_jax.study.models import mnist1d_cnn, vgg7

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "experiments" / "peers" / "reference_occlusion.json"
CASES = [  # name, kind, window, stride (spatial axes)
    ("1-D window 5 stride 3", "1d", (5,), (3,)),
    ("1-D window 7 stride 4", "1d", (7,), (4,)),
    ("1-D window 4 stride 1", "1d", (4,), (1,)),
    ("2-D window 6x5 stride 4x3", "2d", (6, 5), (4, 3)),
]


def setup(kind: str):
    """(model, params, xs, targets) of a case: fixed seeds, so the tests rebuild them."""
    rng = np.random.default_rng(0)
    if kind == "1d":
        model = mnist1d_cnn("study")
        params = model.init(jax.random.key(0), jnp.zeros((1, 40, 1)))["params"]
        return model, params, rng.normal(size=(3, 40, 1)).astype(np.float32), np.array([1, 4, 7])
    model = vgg7("study")
    params = model.init(jax.random.key(0), jnp.zeros((1, 20, 20, 3)))["params"]
    return model, params, rng.uniform(size=(2, 20, 20, 3)).astype(np.float32), np.array([0, 3])


def ours(kind: str, window, stride) -> np.ndarray:
    model, params, xs, ts = setup(kind)
    occ = xj.occlusion(xj.model_fn(model, params), window=window, stride=stride, precision="highest")
    return np.asarray(jax.vmap(occ)(jnp.asarray(xs), jnp.asarray(ts)))


def captum_maps(kind: str, window, stride) -> np.ndarray:
    import torch
    from captum.attr import Occlusion
    from peers import transplant

    model, params, xs, ts = setup(kind)
    twin = transplant.from_flax(model, params)
    channels = xs.shape[-1]
    out = Occlusion(twin).attribute(torch.as_tensor(transplant.to_channels_first(xs)),
                                    sliding_window_shapes=(channels, *window), strides=(channels, *stride),
                                    target=torch.as_tensor(ts), baselines=0.0)
    return out.detach().numpy()[:, 0]  # every channel carries the same value: the window spans them all


def main(argv=None) -> int:
    args = cli.parse(__doc__, ROOT / "results" / "compare_occlusion_captum", argv)
    if cli.missing(("torch", "captum"), args.out, "see experiments/compare_metrics_peers.py for the peers venv"):
        return 0
    version = importlib.metadata.version("captum")
    result = {"about": __doc__.splitlines()[0], "captum": version, "cases": []}
    for name, kind, window, stride in CASES:
        mine, theirs = ours(kind, window, stride), captum_maps(kind, window, stride)
        rel = float(np.abs(mine - theirs).max() / np.abs(theirs).max())
        result["cases"].append({"name": name, "kind": kind, "window": window, "stride": stride,
                                "captum": theirs.tolist(), "max_rel_diff": rel})
        print(f"  {name}: max |ours - Captum| / max |Captum| = {rel:.2e}")
    cli.write(result, args, REFERENCE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
