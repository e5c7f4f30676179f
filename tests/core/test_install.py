"""The library installs and runs with its core dependencies only (jax, numpy, scipy, tqdm):
tests/core/install_check.py imports it in a fresh interpreter where every optional package
(flax, equinox, haiku, matplotlib, scikit-image, the study's data packages) is unimportable.
experiments/check_install.sh runs the same check after a real `pip install .` in a new venv."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_library_needs_none_of_the_extras():
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    run = subprocess.run([sys.executable, str(ROOT / "tests" / "core" / "install_check.py")], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and "install check OK" in run.stdout, run.stdout[-2000:] + run.stderr[-3000:]
