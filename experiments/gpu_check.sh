#!/usr/bin/env bash
# The prepared GPU check (run through the lent-device tool from the repo root; $OUT collects
# the results): the benchmark at GPU sizes, then the main job, on the GPU image's own
# jax/flax/optax (the MNIST-1D cache in data/ is carried along; nothing is downloaded).
set -uo pipefail
OUT=${OUT:-results/gpu}
mkdir -p "$OUT"
export PYTHONPATH=$PWD XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import jax, flax, optax; print('jax', jax.__version__, 'flax', flax.__version__, 'optax', optax.__version__, jax.devices())" | tee -a "$OUT/gpu.txt"
timeout 330 python3 experiments/benchmark.py --vgg-batch 16 --rise-masks 8000 --out "$OUT" 2>&1 | grep -v Warning | tee "$OUT/benchmark.log"
timeout 200 python3 experiments/mnist1d_job.py --out "$OUT/mnist1d" --ckpt-dir /tmp/xai_ckpt 2>&1 | grep -v -E "^(train|attribute):" | tail -40 | tee "$OUT/mnist1d.log"
