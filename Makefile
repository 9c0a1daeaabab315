# Two commands: `make release` (the whole release on the recipe, default: offline smoke) and
# `make test`. Both set up .venv themselves: torch 2.13.0 first, then the project under
# constraints.txt (keeps torch on that wheel; numpy/pyarrow pinned for bfcl-eval).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
RECIPE ?= recipes/smoke.yaml
SET ?=
PYTEST_ARGS ?=
STAMP := $(VENV)/.installed

export HF_HUB_DISABLE_TELEMETRY := 1

.PHONY: setup test release build train bench lint format vllm-env serve-synth serve-executor serve-planner clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install torch==2.13.0
	$(BIN)/pip install -c constraints.txt -e '.[dev]'
	touch $(STAMP)

# Tests never touch the network or the user's Hub cache.
test: setup
	$(BIN)/ruff check .
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \
	HF_HOME=$$(mktemp -d) $(BIN)/python -m pytest $(PYTEST_ARGS)

PUSH ?=
release: setup
	$(BIN)/apo-planner release --recipe $(RECIPE) $(foreach s,$(SET),--set $(s)) $(if $(PUSH),--push)

build: setup
	$(BIN)/apo-planner build --recipe $(RECIPE) $(foreach s,$(SET),--set $(s))

# Train on NPROC GPUs of one node with accelerate + FSDP; NPROC=1 runs in a single process.
NPROC ?= 1
ACCELERATE_CONFIG ?= training/accelerate/fsdp.yaml
train: setup
ifeq ($(NPROC),1)
	$(BIN)/apo-planner train --recipe $(RECIPE) $(foreach s,$(SET),--set $(s))
else
	$(BIN)/accelerate launch --config_file $(ACCELERATE_CONFIG) --num_processes $(NPROC) \
		-m entry.cli train --recipe $(RECIPE) $(foreach s,$(SET),--set $(s))
endif

bench: setup
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 HF_HOME=$$(mktemp -d) $(BIN)/python -m benchmarks.abstraction
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 HF_HOME=$$(mktemp -d) $(BIN)/python -m benchmarks.synthesis
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 HF_HOME=$$(mktemp -d) $(BIN)/python -m benchmarks.training
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 HF_HOME=$$(mktemp -d) $(BIN)/python -m benchmarks.planner_overhead

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# vLLM pins its own torch and transformers: it lives in a separate environment and is only
# talked to over its OpenAI-compatible API. Needs a CUDA machine; never run in CI.
VLLM_VENV ?= .venv-vllm
vllm-env:
	test -x $(VLLM_VENV)/bin/python || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/pip install --upgrade pip
	$(VLLM_VENV)/bin/pip install 'vllm==0.33.*'

# The paper's synthesizer behind vLLM's OpenAI-compatible API (GPU machine, after `make vllm-env`).
SYNTH_MODEL ?= Qwen/Qwen3-30B-A3B-Instruct-2507
SYNTH_PORT ?= 8000
TP ?= 1
serve-synth:
	$(VLLM_VENV)/bin/vllm serve $(SYNTH_MODEL) --port $(SYNTH_PORT) --tensor-parallel-size $(TP) \
		--max-model-len 16384 --gpu-memory-utilization 0.9

# The executor and the planner for `apo-planner eval --recipe recipes/paper.yaml`.
EXECUTOR_MODEL ?= Qwen/Qwen3-30B-A3B-Instruct-2507
EXECUTOR_PORT ?= 8000
PLANNER_MODEL ?= runs/paper/train/merged
PLANNER_PORT ?= 8001
serve-executor:
	$(VLLM_VENV)/bin/vllm serve $(EXECUTOR_MODEL) --port $(EXECUTOR_PORT) --tensor-parallel-size $(TP) \
		--max-model-len 32768 --gpu-memory-utilization 0.85
serve-planner:
	$(VLLM_VENV)/bin/vllm serve $(PLANNER_MODEL) --port $(PLANNER_PORT) --max-model-len 8192 \
		--gpu-memory-utilization 0.3

clean:
	rm -rf runs release .pytest_cache .ruff_cache
