import os
import subprocess
import sys
from pathlib import Path

import pytest

import xai_jax.distributed as dist


def test_eight_forced_host_devices_match_one_device():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
    script = Path(__file__).with_name("distributed_check.py")
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run([sys.executable, str(script)], env=env, cwd=root, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert "ALL OK" in proc.stdout


def test_data_mesh_bad_device_count():
    with pytest.raises(ValueError, match="devices must be between 1 and"):
        dist.data_mesh(10_000)
