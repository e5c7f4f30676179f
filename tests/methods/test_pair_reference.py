"""Guided IG, Blur IG and XRAI against PAIR saliency 0.2.1's committed values
(experiments/compare_pair_saliency.py, which rebuilds the same cases with PAIR installed)."""

import json
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

import xai_jax as xj

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "experiments" / "peers" / "reference_pair.json"
sys.path.insert(0, str(ROOT / "experiments"))
import compare_pair_saliency as cmp  # noqa: E402

if not REFERENCE.exists():
    pytest.skip(f"{REFERENCE} is missing: run experiments/compare_pair_saliency.py with PAIR installed",
                allow_module_level=True)
CASES = json.loads(REFERENCE.read_text())["cases"]


def test_guided_ig_matches_pair_within_1e_3_of_the_maximum():
    f, xs, ts = cmp.setup("1d")
    theirs = np.asarray(CASES["guided_ig_1d"]["pair"])
    mine = cmp.ours_guided(f, xs, ts)
    assert mine.shape == theirs.shape
    assert cmp.rel(mine, theirs) < 1e-3


def test_blur_ig_matches_pair_with_x64():
    # in float64 on both sides (see the script: float32 rounding flips max-pool near-ties)
    with jax.enable_x64(True):
        f, xs, ts = cmp.setup("2d", size=24, x64=True)
        mine = cmp.ours_blur(f, xs, ts)
    theirs = np.asarray(CASES["blur_ig_2d"]["pair_x64"])
    assert mine.shape == theirs.shape
    assert cmp.rel(mine, theirs) < 1e-6


def test_xrai_ranks_segments_as_pair_does():
    f, xs, ts = cmp.setup("2d", size=32)
    ig = cmp.base_ig(f)
    case = CASES["xrai_2d"]
    assert case["same_segments"]
    for x, t, heat, ranks in zip(xs, ts, case["pair_heatmap"], case["pair_ranks"]):
        mine_heat, mine_ranks = xj.xrai(ig, return_ranks=True)(x, t)
        np.testing.assert_array_equal(mine_ranks, np.asarray(ranks))
        np.testing.assert_allclose(mine_heat, np.asarray(heat), rtol=1e-5, atol=1e-6 * np.abs(heat).max())
