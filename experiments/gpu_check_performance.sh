#!/usr/bin/env bash
# Prepared GPU check for performance v2 (issue 12), < 6 minutes, on the device image's own
# jax: the numerics tests (jit/vmap against eager, precision, completeness, adaptive IG,
# device-resident attribute), the precision study (default vs "highest"), then the benchmark
# rows (attribute vs bare jit(vmap), adaptive IG vs uniform rules, Captum when torch is on
# the image). mnist1d and captum travel as wheels in .whl/ (pure Python; nothing downloaded).
set -uo pipefail
OUT=${OUT:-results/gpu_performance}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps .whl/mnist1d-*.whl .whl/captum-*.whl 2>&1 | tail -1
python3 -m pip install -q --no-index --no-deps --no-build-isolation -e . > /dev/null
export XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
python3 -c "import jax; print('jax', jax.__version__, jax.devices())" | tee -a "$OUT/gpu.txt"
timeout 100 python3 -m pytest -q -x -p no:cacheprovider tests/core/test_precision.py tests/methods/test_integrated_gradients_adaptive.py \
    tests/methods/test_integrated_gradients.py tests/methods/test_grad_cam.py tests/core/test_batching.py 2>&1 | tail -8 | tee "$OUT/tests.log"
timeout 80 python3 experiments/precision_study.py --out "$OUT" --data-dir /tmp/data 2>&1 | grep -v Warn | tail -8
timeout 150 python3 experiments/benchmark.py --skip-metrics --out "$OUT" --data-dir /tmp/data 2>&1 \
    | grep -v Warn | tail -40 | tee "$OUT/benchmark.log"
