# Pulse: two commands from a fresh clone.
#   make up     install into ./.venv and start the platform (returns once the API answers)
#   make test   install into ./.venv and run lint, import contracts, types and all tests
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.pulse-installed
# Extra pip arguments for torch, e.g. TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu"
TORCH_PIP_ARGS ?=
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install up down status test lint test-embedded bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# The CPU build of torch first: an unpinned torch would pull a multi-GB CUDA build.
	$(BIN)/python -m pip install --quiet "torch==2.13.0" $(TORCH_PIP_ARGS)
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

up: install
	$(BIN)/pulse up

down:
	$(BIN)/pulse down

status:
	$(BIN)/pulse status

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy

# The storage and job tests once more on an embedded PostgreSQL, as on a machine without a server.
test-embedded: install
	PULSE_TEST_DB=embedded $(BIN)/pytest -q -p no:cacheprovider tests/integration \
		--deselect tests/integration/test_embed_and_index.py \
		--deselect tests/integration/test_embed_models.py \
		--deselect tests/integration/test_embed_placement.py \
		--deselect tests/integration/test_collect_job.py \
		--deselect tests/integration/test_search_index.py \
		--deselect tests/integration/test_fetch.py \
		--deselect tests/integration/test_cluster_sim.py \
		--deselect tests/integration/test_job_submit.py

test: lint test-embedded
	$(BIN)/pytest

bench: install
	$(BIN)/python bench/embed.py
	$(BIN)/python bench/extraction.py
	$(BIN)/python bench/collect.py
	$(BIN)/python bench/search_quality.py
	$(BIN)/python bench/search_speed.py
	$(BIN)/python bench/cms.py

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache .mypy_cache .import_linter_cache
