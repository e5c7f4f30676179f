# Two commands for a newcomer: `make demo` (main job) and `make test` (the test suite).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo smoke test test-extra fuzz memcheck peers scripts docs doctest-md setup setup-tfds reproduce benchmark hmt clean

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

# make test: both cores (xdist; a file whose module fixture is costly stays on one worker), one
# persistent JAX compilation cache for the run (workers and the scripts that tests start share
# every compiled program), removed afterwards; XLA's slow optimisation passes off, since a test's
# programs are small and run a few times, so compiling them is most of the suite's time. The
# marked checks have their own targets.
FAST := not (fuzz or memcheck or peers or benchmark or scripts or docs or extended)
PYTEST = cache=$$(mktemp -d) && trap 'rm -rf "$$cache"' EXIT && \
	JAX_COMPILATION_CACHE_DIR="$$cache" JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0 \
	JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES=-1 JAX_DISABLE_MOST_OPTIMIZATIONS=1 \
	$(PY) -m pytest -q -n 2 --dist loadgroup

test: $(STAMP)
	@$(PYTEST) -m "$(FAST)" tests

# many hypothesis examples (make test runs a few of each property)
fuzz: $(STAMP)
	@export HYPOTHESIS_PROFILE=fuzz && $(PYTEST) tests/core/test_properties.py

# full-size (224 px) inputs and memory bounds
memcheck: $(STAMP)
	@$(PYTEST) -m memcheck tests || [ $$? -eq 5 ]

# the peer comparisons' quick runs (the peers themselves: pip install -e ".[peers]" in .venv-peers)
peers: $(STAMP)
	@$(PYTEST) -m peers tests || [ $$? -eq 5 ]

# the study's experiment scripts end to end (quick form, empty data dir)
scripts: $(STAMP)
	@$(PYTEST) -m scripts tests

# every ```python block of README.md and docs/*.md, in order, one fresh interpreter per file
doctest-md: $(STAMP)
	@$(PYTEST) -m docs tests/test_docs.py

# the documentation site (guides, results, API reference from the docstrings) into site/, strict:
# a broken link, anchor or API reference fails. Its own venv, from requirements-docs.txt.
DOCS_VENV ?= .venv-docs
DOCS_STAMP := $(DOCS_VENV)/.installed
$(DOCS_STAMP): requirements-docs.txt
	$(PYTHON) -m venv $(DOCS_VENV)
	$(DOCS_VENV)/bin/python -m pip install -q --upgrade pip
	$(DOCS_VENV)/bin/python -m pip install -q -r requirements-docs.txt
	touch $(DOCS_STAMP)

docs: $(DOCS_STAMP)
	NO_MKDOCS_2_WARNING=1 $(DOCS_VENV)/bin/mkdocs build --strict

# every marked check (CI): fuzz, memcheck, peers, the study scripts, the speed scripts' quick runs and
# the docs' python blocks
test-extra: $(STAMP)
	@$(PYTEST) -m "not ($(FAST)) and not rss" tests || [ $$? -eq 5 ]

reproduce: $(STAMP)
	$(PY) experiments/reproduce_study.py

# the speed scripts' quick runs, then the benchmark itself
benchmark: $(STAMP)
	@$(PYTEST) -m benchmark tests
	$(PY) experiments/benchmark.py

hmt: $(STAMP)
	$(PY) experiments/hmt.py

clean:
	rm -rf results checkpoints
