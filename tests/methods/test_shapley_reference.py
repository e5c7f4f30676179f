"""The perturbation, Shapley and layer/neuron methods against Captum 0.9's committed values
(experiments/compare_shapley_captum.py, fed our draws where Captum draws)."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "experiments" / "peers" / "reference_shapley.json"
sys.path.insert(0, str(ROOT / "experiments"))
import compare_shapley_captum as cmp  # noqa: E402

CASES = json.loads(REFERENCE.read_text())["cases"]


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_matches_captum(case):
    mine = cmp.ours(case["kind"], case["method"], case["options"]) * case["captum_scale"]
    theirs = np.asarray(case["captum"], np.float32)
    assert mine.shape == theirs.shape
    np.testing.assert_allclose(mine, theirs, rtol=0, atol=case["tolerance"] * np.abs(theirs).max())
