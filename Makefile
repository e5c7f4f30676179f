# Two commands for a newcomer: `make demo` (main job) and `make test` (the test suite).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo smoke test setup setup-tfds reproduce benchmark hmt clean

# dm-haiku goes in with --no-deps: its metadata pulls jax extras that would replace the pinned jax
# (absl-py, its one other dependency, comes with requirements.txt)
$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps dm-haiku==0.0.17 jmp==0.0.4 tabulate==0.10.0
	$(PY) -m pip install -q --no-deps -e . > /dev/null 2>&1 || $(PY) -m pip install --no-deps -e .
	touch $(STAMP)

setup: $(STAMP)

# optional: TensorFlow for the tensorflow-datasets HMT path (CI installs it too)
setup-tfds: $(STAMP)
	$(PY) -m pip install -q -r requirements-tfds.txt

demo: $(STAMP)
	$(PY) experiments/mnist1d_job.py

# the main job's quick form: same script and code path as `demo`, empty data cache, temp dir
smoke: $(STAMP)
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	$(PY) experiments/mnist1d_job.py --quick --out "$$tmp/results" --data-dir "$$tmp/data" \
		--ckpt-dir "$$tmp/checkpoints" && echo "smoke: main job OK (quick form, empty cache)"

test: $(STAMP)
	$(PY) -m pytest -q tests

reproduce: $(STAMP)
	$(PY) experiments/reproduce_study.py

benchmark: $(STAMP)
	$(PY) experiments/benchmark.py

hmt: $(STAMP)
	$(PY) experiments/hmt.py

clean:
	rm -rf results checkpoints
