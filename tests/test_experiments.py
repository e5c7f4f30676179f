"""The experiment scripts run end to end (small settings) and reproduce the study."""

import importlib.util
import json
from pathlib import Path

import pytest

from tests.conftest import SEED, need

ROOT = Path(__file__).resolve().parents[1]


def load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "experiments" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_reproduce_study_within_tolerance(tmp_path):
    weights = need(SEED / "MNIST1D.h5")
    result = load("reproduce_study").reproduce(weights, tmp_path, methods=["Integrated Gradients"])
    assert result["accuracy"] == pytest.approx(0.877)
    rows = {r["method"]: r for r in result["reproduction"]}
    for name, (drop, inc) in {"Study Grad-CAM (softmax)": (0.411, 0.301), "Study IG (faulty)": (0.409, 0.173)}.items():
        assert abs(rows[name]["drop"] - drop) <= 0.03, rows[name]
        assert abs(rows[name]["increase"] - inc) <= 0.03, rows[name]
    # the corrected IG is a different map from the faulty one: its drop rate differs clearly
    summary = result["summary"]
    assert abs(summary["Integrated Gradients"]["drop"][0] - rows["Study IG (faulty)"]["drop"]) > 0.05
    assert (tmp_path / "report.md").exists() and (tmp_path / "metrics.csv").exists()


def test_main_job_quick_end_to_end(tmp_path):
    out = tmp_path / "out"
    results = load("mnist1d").main(["--quick", "--out", str(out), "--ckpt-dir", str(tmp_path / "ckpt")])
    assert results["training"]["study"]["test_accuracy"] > 0.5
    for name in ("metrics.json", "metrics.md", "metrics.csv", "per_class.csv", "report.md", "examples.png",
                 "training_curves.png", "samples.png", "deletion_insertion.png", "sanity_check.png"):
        assert (out / name).exists(), name
    data = json.loads((out / "metrics.json").read_text())
    assert set(data["summary"]) >= {"Grad-CAM", "Integrated Gradients", "RISE", "SISE"}
    # a second run resumes from the checkpoint instead of training again
    again = load("mnist1d").main(["--quick", "--out", str(out), "--ckpt-dir", str(tmp_path / "ckpt")])
    assert again["training"]["study"]["restored_from_checkpoint"]
    assert again["training"]["study"]["test_accuracy"] == results["training"]["study"]["test_accuracy"]


def test_hmt_train_on_synthetic_tiles_and_explain(tmp_path):
    from tests.test_data_hmt import make_tiles

    make_tiles(tmp_path / "tiles", per_class=5, size=40)
    out = tmp_path / "out"
    result = load("hmt").main(["--train", "--data", str(tmp_path / "tiles"), "--size", "32", "--steps", "30",
                               "--batch-size", "16", "--n", "4", "--out", str(out),
                               "--ckpt-dir", str(tmp_path / "ckpt"), "--cache-dir", str(tmp_path / "cache")])
    assert result["training"]["n_test"] == 8 and result["n_explained"] == 4
    assert {"Grad-CAM", "Integrated Gradients", "RISE", "SISE"} <= set(result["summary"])
    for name in ("report.md", "metrics.md", "metrics.csv", "overlays.png", "deletion_insertion.png"):
        assert (out / name).exists(), name


def test_hmt_default_study_weights_on_shared_tiles(tmp_path):
    from tests.conftest import HMT_SAMPLE

    need(HMT_SAMPLE)
    weights = need(SEED / "HMT.h5")
    result = load("hmt").main(["--weights", str(weights), "--size", "64", "--n", "2", "--out", str(tmp_path / "o"),
                               "--cache-dir", str(tmp_path / "cache")])
    assert result["tiles"] == 100 and result["n_explained"] == 2
    assert (tmp_path / "o" / "overlays.png").exists()
