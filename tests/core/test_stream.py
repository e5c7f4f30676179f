"""Streamed, resumable runs (xai_jax.stream, explain/evaluate with out_dir): shards at fixed
boundaries, bitwise the same files after a SIGKILL and a resume, memory independent of N."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from xai_jax import stream

SCRIPT = Path(__file__).with_name("stream_check.py")
ROOT = Path(__file__).resolve().parents[2]


def _run(out, n, shard, *extra):
    return subprocess.run([sys.executable, str(SCRIPT), str(out), str(n), str(shard), *extra], cwd=ROOT,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True, text=True, timeout=600)


def _files(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


@pytest.mark.xdist_group("stream")
def test_killed_run_resumes_to_the_same_bytes(tmp_path):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    r = _run(whole, 1200, 100)
    assert r.returncode == 0 and "DONE" in r.stdout, r.stderr[-3000:]
    proc = subprocess.Popen([sys.executable, str(SCRIPT), str(killed), "1200", "100"], cwd=ROOT,
                            env=dict(os.environ, PYTHONPATH=str(ROOT)), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    shards = killed / "explanations"
    deadline = time.time() + 300
    while time.time() < deadline and len(list(shards.glob("shard-*.npz"))) < 3 and proc.poll() is None:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    written = len(list(shards.glob("shard-*.npz")))
    assert 3 <= written < 12, f"the run was killed after {written} of 12 shards"
    assert not (shards / "index.json").exists()
    r = _run(killed, 1200, 100)
    assert r.returncode == 0 and "DONE" in r.stdout, r.stderr[-3000:]
    a, b = _files(whole), _files(killed)
    assert sorted(a) == sorted(b)
    assert [k for k in a if a[k] != b[k]] == []


@pytest.mark.xdist_group("stream")
def test_two_processes_write_the_files_of_one(tmp_path):
    """jax.distributed with 2 CPU processes: each writes its shards (k % 2 == its index),
    process 0 the index; the directory is bitwise the one process's."""
    from tests.core.test_multiprocess import _free_port
    one, two = tmp_path / "one", tmp_path / "two"
    r = _run(one, 600, 100)
    assert r.returncode == 0 and "DONE" in r.stdout, r.stderr[-3000:]
    port = str(_free_port())
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("XLA_FLAGS", None)
    procs = [subprocess.Popen([sys.executable, str(SCRIPT), str(two), "600", "100", "--process", str(p), "--port",
                               port], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for p in (0, 1)]
    logs = [p.communicate(timeout=600)[0] for p in procs]
    for p, log in zip(procs, logs):
        assert p.returncode == 0 and "DONE" in log, log[-3000:]
    a, b = _files(one), _files(two)
    assert sorted(a) == sorted(b)
    assert [k for k in a if a[k] != b[k]] == []


def test_shards_have_fixed_boundaries_whatever_the_batches():
    x = np.arange(23 * 2, dtype=np.float32).reshape(23, 2, 1)
    y = np.arange(23)
    for cuts in ([23], [5, 5, 5, 8], [1] * 23, [10, 13]):
        edges = np.cumsum([0, *cuts])
        src = [(x[a:b], y[a:b]) for a, b in zip(edges[:-1], edges[1:])]
        got = list(stream.shards(src, 10))
        assert [k for k, _, _ in got] == [0, 1, 2]
        assert [len(xx) for _, xx, _ in got] == [10, 10, 3]
        np.testing.assert_array_equal(np.concatenate([xx for _, xx, _ in got]), x)
        np.testing.assert_array_equal(np.concatenate([yy for _, _, yy in got]), y)


def test_batches_accept_arrays_pairs_dicts_datasets_and_callables():
    x = np.ones((4, 3, 1), np.float32)
    y = np.arange(4)

    class Dataset:  # what tf.data / tfds give
        def as_numpy_iterator(self):
            return iter([{"image": x, "label": y}])

    for src in ([x], [(x, y)], [{"image": x, "label": y}], [{"x": x, "y": y}], Dataset(), lambda: iter([(x, y)])):
        (got_x, got_y), = list(stream.batches(src))
        np.testing.assert_array_equal(got_x, x)
        assert got_y is None or np.array_equal(got_y, y)


@pytest.mark.parametrize("src, match", [
    (iter([np.ones((2, 3))]), "one-pass iterator"),
    ([np.ones(3)], r"batch 0 has shape \(3,\)"),
    ([np.ones((2, 3)), np.ones((2, 4))], r"batch 1 holds inputs of shape \(4,\)"),
    ([(np.ones((2, 3)), np.arange(3))], r"labels of shape \(3,\) for 2 inputs"),
    ([(np.ones((2, 3)), np.arange(2), 1)], "tuple of 3 items"),
    ([{"img": np.ones((2, 3))}], "dict with keys"),
    (lambda: 3, "returned int"),
    (3.5, "must be an array"),
])
def test_bad_sources_are_named(src, match):
    with pytest.raises((TypeError, ValueError), match=match):
        list(stream.batches(src))


def test_npz_is_deterministic_and_atomic(tmp_path):
    arrays = {"b": np.arange(5.0), "a": np.asarray("abc"), "c": np.ones((2, 2), bool)[:, ::-1]}
    stream.write_npz(tmp_path / "one.npz", arrays)
    time.sleep(1.1)  # zip timestamps have 2 s resolution: a clock-dependent writer would differ
    stream.write_npz(tmp_path / "two.npz", dict(reversed(list(arrays.items()))))
    assert (tmp_path / "one.npz").read_bytes() == (tmp_path / "two.npz").read_bytes()
    assert not list(tmp_path.glob("*.partial"))
    with np.load(tmp_path / "one.npz") as z:
        assert str(z["a"]) == "abc" and z["c"].shape == (2, 2)


def test_resume_with_other_settings_names_them(tmp_path):
    stream.start_run(tmp_path, {"methods": ["a"], "shard_size": 10}, True, "explain")
    with pytest.raises(ValueError, match=r"shard_size: 10 before, 20 now"):
        stream.start_run(tmp_path, {"methods": ["a"], "shard_size": 20}, True, "explain")
    with pytest.raises(FileExistsError, match="resume=True"):
        stream.start_run(tmp_path, {"methods": ["a"], "shard_size": 10}, False, "explain")


@pytest.mark.memcheck
def test_memory_is_independent_of_n(tmp_path):
    """RSS(20,000 inputs) - RSS(2,000) <= 64 MB, each a fresh process."""
    small = _run(tmp_path / "small", 2000, 250, "--rss")
    big = _run(tmp_path / "big", 20000, 250, "--rss")
    for r in (small, big):
        assert r.returncode == 0, r.stderr[-3000:]
    rss = [float(next(line.split()[1] for line in r.stdout.splitlines() if line.startswith("RSS_MB")))
           for r in (small, big)]
    assert rss[1] - rss[0] <= 64, f"peak RSS {rss[0]:.0f} MB at 2,000 inputs, {rss[1]:.0f} MB at 20,000"
