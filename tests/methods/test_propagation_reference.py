"""The propagation family against the committed maps of Captum 0.9 and Zennit 1.0.0
(experiments/compare_propagation_peers.py: same weights; DeepLift, DeepLiftShap,
GuidedBackprop, Deconvolution, GuidedGradCam and LRP from Captum; Zennit's composites with
BatchNorm merged). Goal: max |ours - theirs| <= 1e-4 max |theirs|. The study CNN runs in
`make test`; the VGG preset and the BatchNorm net (slower to compile; the canonizer is also
checked against a hand merge in test_lrp.py) under `make peers`."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "experiments" / "peers" / "reference_propagation.json"
sys.path.insert(0, str(ROOT / "experiments"))
import compare_propagation_peers as cmp  # noqa: E402

CASES = json.loads(REFERENCE.read_text())["cases"]
PARAMS = [pytest.param(case, name, marks=[pytest.mark.peers] if case != "mnist1d" else [])
          for case, methods in CASES.items() for name in methods]


@pytest.mark.parametrize("case, name", PARAMS)
def test_matches_the_peer_within_1e_4_of_its_largest_value(case, name):
    theirs = np.asarray(CASES[case][name]["theirs"], np.float64)
    mine = cmp.ours(case, name)
    assert mine.shape == theirs.shape
    assert cmp.agreement(mine, theirs) < 1e-4


def test_the_reference_covers_every_method_and_peer():
    assert set(CASES) == {"mnist1d", "vgg", "bn"}
    for case in ("mnist1d", "vgg"):
        assert set(CASES[case]) == set(cmp.CAPTUM) | set(cmp.ZENNIT)
    assert all(v["max_abs_diff_rel"] < 1e-4 for methods in CASES.values() for v in methods.values())
