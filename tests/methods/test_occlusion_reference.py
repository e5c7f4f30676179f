"""Occlusion's truncated edge windows: against Captum 0.9's committed values
(experiments/compare_occlusion_captum.py) and by hand."""

import json
import sys
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

import xai_jax as xj

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "experiments" / "peers" / "reference_occlusion.json"
sys.path.insert(0, str(ROOT / "experiments"))
import compare_occlusion_captum as cmp  # noqa: E402

CASES = json.loads(REFERENCE.read_text())["cases"]


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_matches_captum_with_strides_that_do_not_divide(case):
    mine = cmp.ours(case["kind"], tuple(case["window"]), tuple(case["stride"]))
    theirs = np.asarray(case["captum"], np.float32)
    assert mine.shape == theirs.shape
    np.testing.assert_allclose(mine, theirs, rtol=0, atol=1e-4 * np.abs(theirs).max())


def test_every_position_is_covered_by_hand():
    # f(x) = sum of x: a window's drop is the sum it removes; the map averages the drops of the
    # windows covering each position. Length 11, window 4, stride 3: windows at 0, 3, 6, 9, the
    # last truncated to [9, 11), so position 10 is explained (it was 0 before).
    f = lambda x: jnp.stack([x.sum(), -x.sum()])  # noqa: E731
    x = jnp.arange(1.0, 12.0)[:, None]
    got = np.asarray(xj.occlusion(f, window=4, stride=3)(x, 0))
    drops = {0: 1 + 2 + 3 + 4, 3: 4 + 5 + 6 + 7, 6: 7 + 8 + 9 + 10, 9: 10 + 11}
    want = [np.mean([d for s, d in drops.items() if s <= i < s + 4]) for i in range(11)]
    np.testing.assert_allclose(got, want, rtol=1e-6)
