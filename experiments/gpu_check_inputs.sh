#!/usr/bin/env bash
# Prepared GPU check for the input checks (run through the lent-device tool from the repo root;
# $OUT collects the logs): the main job's quick form from an empty cache, then the bad-input
# tables and the experiment tests, on the GPU image's own jax/flax/optax (mnist1d travels as a
# wheel in .whl/; nothing is downloaded).
set -uo pipefail
OUT=${OUT:-results/gpu_inputs}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps .whl/mnist1d-*.whl
python3 -m pip install -q --no-index --no-deps --no-build-isolation -e . > /dev/null
export XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import jax, flax, optax; print('jax', jax.__version__, 'flax', flax.__version__, jax.devices())" | tee -a "$OUT/gpu.txt"
tmp=$(mktemp -d)
( time timeout 120 python3 experiments/mnist1d_job.py --quick --out "$tmp/out" --data-dir "$tmp/data" \
    --ckpt-dir "$tmp/ckpt" ) 2>&1 | grep -v -E "^(train|attribute):" | tail -8 | tee "$OUT/smoke.log"
timeout 400 python3 -m pytest -q -p no:cacheprovider tests/core/test_bad_inputs.py tests/study/test_bad_inputs_train.py \
    tests/study/test_bad_inputs_data.py tests/study/test_experiments.py 2>&1 | tail -25 | tee "$OUT/pytest.log"
