import os
import shutil
import tempfile
from pathlib import Path

import pytest

# One persistent JAX compilation cache per test run, shared by the xdist workers and by the
# subprocesses that tests start (they inherit the environment): a program that one process
# compiled is loaded by the others. Set here, before any test module imports jax; `make test`
# sets the same variables itself. Every program is cached, however small or quick to compile.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="xai_jax-jax-cache-")
    os.environ["XAI_JAX_OWN_CACHE"] = os.environ["JAX_COMPILATION_CACHE_DIR"]  # removed at the end
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "-1")

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
SEED = SHARED / "seed"
HMT_SAMPLE = SHARED / "data" / "hmt-sample"


def need(path: Path):
    if not path.exists():
        pytest.skip(f"{path} is absent (../shared sits beside the checkout in CI and sessions)")
    return path


@pytest.fixture(scope="session")
def mnist1d():
    from xai_jax.study.data.mnist1d import load_mnist1d

    return load_mnist1d()


@pytest.fixture(scope="session")
def study_mnist1d(mnist1d):
    """The study's Keras MNIST-1D weights in our Flax model: (model, params)."""
    from xai_jax.study.models import load_keras_h5, mnist1d_cnn

    model = mnist1d_cnn("study")
    return model, load_keras_h5(need(SEED / "MNIST1D.h5"), model, (40, 1))


def pytest_unconfigure(config):
    own = os.environ.get("XAI_JAX_OWN_CACHE")
    if own and not hasattr(config, "workerinput"):  # the controller, after every worker is done
        shutil.rmtree(own, ignore_errors=True)


# the longest files first, so that neither xdist worker ends the run alone on one of them
LONGEST_FIRST = ("study/test_experiments.py", "core/test_multiprocess.py", "metrics/test_peer_reference.py",
                 "methods/test_integrated_gradients_adaptive.py", "core/test_distributed.py", "study/test_suite.py")


# the longest end-to-end checks (each 20-70 s on 2 cores): `make test-extra` (CI) runs them, `make test` not
EXTENDED = ("study/test_suite.py::test_every_new_method_explains_through_the_suite",
            "core/test_stream.py::test_killed_run_resumes_to_the_same_bytes",
            "core/test_stream.py::test_two_processes_write_the_files_of_one",
            "core/test_multiprocess.py::", "core/test_distributed.py::",
            "study/test_experiments.py::test_reproduce_study_within_tolerance",
            "metrics/test_peer_reference.py::", "methods/test_propagation_reference.py::",
            "methods/test_shapley_reference.py::", "methods/test_integrated_gradients_adaptive.py::",
            "adapters/test_linen_resnet.py::", "methods/test_grad_cam_tokens.py::", "core/test_install.py::",
            "methods/test_blur_ig.py::test_blur_ig_matches_pairs_formula_on_signals_and_images")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if any(part in item.nodeid for part in EXTENDED):
            item.add_marker(pytest.mark.extended)

    def rank(item):
        path = item.nodeid.split("::")[0]
        return next((i for i, tail in enumerate(LONGEST_FIRST) if path.endswith(tail)), len(LONGEST_FIRST))

    items.sort(key=rank)  # stable: the order within a file and among the others is kept
