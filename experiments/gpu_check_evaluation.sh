#!/usr/bin/env bash
# Prepared GPU check for the evaluation: `make reproduce` in full (MNIST-1D and the HMT row on
# all 100 shared tiles) and the main job, on the GPU image's own jax/flax/optax. The study's
# files travel in .devcache/shared (a copy of ../shared, which does not travel); mnist1d as a
# wheel in .whl/. Nothing is downloaded.
set -uo pipefail
OUT=${OUT:-results/gpu_evaluation}
mkdir -p "$OUT/reproduce" "$OUT/mnist1d"
python3 -m pip install -q --no-index --no-deps .whl/mnist1d-*.whl
python3 -m pip install -q --no-index --no-deps --no-build-isolation -e . > /dev/null
export XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONUNBUFFERED=1
S=.devcache/shared
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
timeout 330 python3 experiments/reproduce_study.py --weights $S/seed/MNIST1D.h5 --hmt-weights $S/seed/HMT.h5 \
    --hmt-tiles $S/data/hmt-sample --hmt-ig-steps 64 --out /tmp/rep --data-dir /tmp/data > "$OUT/reproduce.log" 2>&1
cp /tmp/rep/report.md /tmp/rep/ranks.png "$OUT/reproduce/" 2>/dev/null; cp /tmp/rep/hmt/ranks_hmt.png "$OUT/reproduce/" 2>/dev/null
tail -5 "$OUT/reproduce.log"
timeout 150 python3 experiments/mnist1d_job.py --out /tmp/job --data-dir /tmp/data --ckpt-dir /tmp/ck 2>&1 \
    | grep -v -E "^(train|attribute):" | tail -3
cp /tmp/job/report.md /tmp/job/ranks.png "$OUT/mnist1d/" 2>/dev/null
