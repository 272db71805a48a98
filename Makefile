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

.PHONY: install browser-deps up down status test lint test-embedded bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# The CPU build of torch first: an unpinned torch would pull a multi-GB CUDA build.
	$(BIN)/python -m pip install --quiet "torch==2.13.0" $(TORCH_PIP_ARGS)
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

# The browser tests' axe-core (tests/e2e/test_console.py), from the npm registry; without npm they skip.
BROWSER_STAMP := tests/browser/node_modules/.pulse-installed
$(BROWSER_STAMP): tests/browser/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
		npm ci --prefix tests/browser --silent --no-audit --no-fund && touch $(BROWSER_STAMP); \
	else echo "npm not found: the console's browser tests will be skipped"; fi

browser-deps: $(BROWSER_STAMP)

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

# The storage-facing tests once more on an embedded PostgreSQL (pgserver, PostgreSQL 16), as on a machine
# without a server: migrations, repositories, the CMS, trends, recommendations and schedules stores, the
# ingest job and backups (pg_dump/pg_restore of that version). Ray-heavy tests run once, in `test`.
EMBEDDED_TESTS := $(addprefix tests/integration/,test_migrations.py test_database_choice.py \
	test_documents_repository.py test_collect_storage.py test_ingest_job.py test_cms_content.py \
	test_cms_users.py test_cms_scheduler.py test_trend_store.py test_trend_queries.py test_rec_store.py \
	test_job_scheduler.py test_backups.py test_local_node.py)
test-embedded: install
	PULSE_TEST_DB=embedded $(BIN)/pytest -q -p no:cacheprovider --durations=10 $(EMBEDDED_TESTS)

test: lint test-embedded browser-deps
	$(BIN)/pytest --durations=30

bench: install
	$(BIN)/python bench/embed.py
	$(BIN)/python bench/extraction.py
	$(BIN)/python bench/collect.py
	$(BIN)/python bench/search_quality.py
	$(BIN)/python bench/search_speed.py
	$(BIN)/python bench/cms.py

clean:
	rm -rf $(VENV) var tests/browser/node_modules .pytest_cache .ruff_cache .mypy_cache .import_linter_cache
