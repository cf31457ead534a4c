# `make demo` and `make test` each work on a fresh clone: they create .venv if
# missing, install torch==2.13.0 first (the CPU build; a looser spec pulls a
# multi-GB CUDA build), then mmdkit itself (non-editable, with its extras), then run.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
DEPS   := $(VENV)/.deps-installed

.PHONY: demo test test-avx2 test-stats test-full lint bench report install clean gpu-check gan-tune

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(DEPS): $(BIN)/python pyproject.toml
	$(BIN)/pip install -q --disable-pip-version-check torch==2.13.0
	$(BIN)/pip install -q --disable-pip-version-check ".[plot,test,triton]"
	touch $(DEPS)

# The package itself, rebuilt from the working tree every time (tests exercise what ships).
install: $(DEPS)
	$(BIN)/pip install -q --disable-pip-version-check --no-deps --force-reinstall .

# Commands run from .venv/: `python -m` puts the cwd first on sys.path, and the
# repository's mmdkit/ folder is not the installed package (kernels/, gan/ are mapped).
demo: install
	mkdir -p runs
	cd $(VENV) && bin/python -m mmdkit.demo --out ../runs/demo

# Default suite (< 10 min on 2 cores): unit, statistical and interpreter-mode
# Triton tests, and every benchmark once with timing disabled so they never rot.
test: install
	$(BIN)/pytest
	$(BIN)/pytest bench/ --benchmark-disable

# The numerics-sensitive files (every float32/float16 comparison against float64) once more on torch's
# AVX2 kernels (this machine's default may be AVX-512): the tolerances are error models (tests/conftest.py
# `budget`), so they must hold on either vector width. CI runs it after `make test`.
NUMERIC_TESTS := tests/test_engine.py tests/test_estimators.py tests/test_triton.py tests/test_kid.py \
	tests/test_fuse.py tests/test_second_order.py tests/test_properties.py tests/test_l1.py
test-avx2: install
	ATEN_CPU_CAPABILITY=avx2 $(BIN)/pytest $(NUMERIC_TESTS)

# The slow statistical tests (type-I error of every test at R >= 400 replicates within
# alpha +- 3 sqrt(alpha (1 - alpha) / R), calibration, power), not GAN training (test_gan.py stays in
# test-full). CI runs it after `make test-avx2`.
test-stats: install
	$(BIN)/pytest -m slow --ignore=tests/test_gan.py --durations=0

# Static checks: ruff with the rule set in pyproject.toml ([tool.ruff]). CI runs it after `make test`.
lint: $(DEPS)
	$(BIN)/ruff check .

# Ahead-of-time compile of every Triton kernel variant for sm_80 and sm_90
# (no GPU needed); fails on register spills. CI runs it after `make test`.
report: install
	cd $(VENV) && bin/python -m mmdkit.kernels.report --quiet --jobs 2

# Everything, including slow statistical tests (type-I error, GAN training).
test-full: install
	$(BIN)/pytest -m "slow or not slow"
	$(BIN)/pytest bench/ --benchmark-disable
	cd $(VENV) && bin/python -m mmdkit.kernels.report --jobs 2

# Timed benchmarks over the issues' full grids (see bench/RESULTS.md).
bench: install
	MMDKIT_BENCH=full $(BIN)/pytest bench/ --benchmark-json=runs/bench.json
	$(BIN)/python bench/make_results.py runs/bench.json > runs/bench.md

# On a CUDA machine, with that machine's own python, torch and triton (no venv, no downloads): the GPU-marked
# tests, then timings appended to bench/GPU_RESULTS.md, in about 5 minutes. Without CUDA it says so and exits 0.
gpu-check:
	$(PYTHON) bench/gpu_check.py

clean:
	rm -rf $(VENV) build dist *.egg-info runs .benchmarks

# Issue 15's equal-budget GAN search (hours; resumable from bench/gan_tuning). It runs inside .venv
# so that the installed package, not the repository's mmdkit/ folder, is imported; the paths are
# the repository's.
gan-tune: install
	cd $(VENV) && bin/python -m mmdkit.gan tune --trials 10 --jobs 2 --report --cache $(CURDIR)/bench/gan_tuning \
		--out-md $(CURDIR)/bench/GAN_RESULTS.md --pacgan-runs $(CURDIR)/bench/gan_runs/pacgan
