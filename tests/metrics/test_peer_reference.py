"""Our metrics still agree with Quantus 0.6 / Captum 0.9.

experiments/compare_metrics_peers.py (run with the optional peers installed) computed every
metric with both libraries on the same MNIST-1D inputs, maps, model and random draws, and
committed the peer values to experiments/peers/reference_metrics.json. Here our values are
recomputed with the current xai_jax (no peer needed: the maps and parameters come from the
JSON) and compared with the committed peer values, within each entry's stated tolerance
(|ours - peer| <= atol + rtol * |peer|; rtol 1e-4 unless the JSON says why not; where the
metric recomputes gradient maps on both sides, up to max_outside_fraction of the values may
be outliers, see the JSON's why_tolerance).
"""

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

# its module-scoped fixture is built once: every test of the file runs in one xdist worker
pytestmark = pytest.mark.xdist_group("peer_reference")

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "experiments" / "peers" / "reference_metrics.json"
FAMILIES = {"pixel_flipping", "region_perturbation_morf", "region_perturbation_lerf", "road", "mprt", "smooth_mprt",
            "efficient_mprt", "random_logit", "infidelity", "infidelity_normalized", "max_sensitivity",
            "faithfulness_correlation", "sparseness", "complexity"}


def _load_reference():
    return json.loads(REFERENCE.read_text()) if REFERENCE.exists() else None


REF = _load_reference()
CHECKED = [] if REF is None else [name for name, e in REF["metrics"].items() if "expected_disagreement" not in e]


def _need_reference():
    if REF is None:
        pytest.skip(f"{REFERENCE.relative_to(ROOT)} is absent: run experiments/compare_metrics_peers.py with the peers")
    return REF


@pytest.fixture(scope="module")
def script():
    if str(ROOT / "experiments") not in sys.path:  # the script imports its sibling package `peers`
        sys.path.insert(0, str(ROOT / "experiments"))
    spec = importlib.util.spec_from_file_location("compare_metrics_peers", ROOT / "experiments" /
                                                  "compare_metrics_peers.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def recomputed(script):
    ref = _need_reference()
    from xai_jax.study.data.mnist1d import DEFAULT_CACHE

    maps = {k: np.asarray(v, np.float32) for k, v in ref["maps"].items()}
    s = script.setup(ref["config"], DEFAULT_CACHE, maps=maps)
    values = script.ours(s, ref["config"])
    imputed, _ = script.road_imputation_ours(s["xs"], s["maps"]["saliency"])
    values["road/imputation"] = {"imputed": imputed[..., 0]}
    return s, values


def test_reference_covers_every_family_and_agreed():
    ref = _need_reference()
    families = {name.split("/")[0] for name in ref["metrics"]}
    assert FAMILIES <= families, f"missing from the reference: {sorted(FAMILIES - families)}"
    assert ref["all_agree"], "the committed reference records a disagreement with the peer"
    assert {"quantus", "captum", "torch"} <= set(ref["versions"])


def test_same_inputs_and_targets(recomputed):
    s, _ = recomputed
    assert len(s["xs"]) == REF["inputs"]["first_test_signals"]
    assert float(s["xs"].sum(dtype=np.float64)) == pytest.approx(REF["inputs"]["x_sum"], rel=1e-9)
    np.testing.assert_array_equal(s["targets"], REF["inputs"]["targets"])


@pytest.mark.parametrize("entry", CHECKED or ["(no reference)"])
def test_ours_agrees_with_the_peer(recomputed, entry):
    _, values = recomputed
    e = REF["metrics"][entry]
    tol = e["tolerance"]
    assert entry in values, f"{entry}: no longer computed by compare_metrics_peers.ours"
    for quantity in e["checks"]:
        peer = np.asarray(e["values"][quantity]["peer"], np.float64)
        ours = np.asarray(values[entry][quantity], np.float64)
        assert ours.shape == peer.shape, f"{entry} {quantity}: shape {ours.shape} vs peer {peer.shape}"
        bad = np.abs(ours - peer) > tol["atol"] + tol["rtol"] * np.abs(peer)
        allowed = int(np.floor(tol.get("max_outside_fraction", 0.0) * peer.size))
        assert bad.sum() <= allowed, (
            f"{entry} {quantity} ({e['peer']}): {int(bad.sum())} values (at {np.argwhere(bad)[:5].tolist()}) differ "
            f"beyond atol={tol['atol']}, rtol={tol['rtol']}, {allowed} allowed; max |diff| "
            f"{np.abs(ours - peer).max():.3g} (tolerance: {e['why_tolerance']})")
