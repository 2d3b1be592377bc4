# Two entry points for a fresh machine: `make demo` runs the bridge against the built-in
# AMI simulator and the local RabbitMQ; `make test` runs the test suite. Both create the
# virtual environment on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The consumer-side tools the contract tests run (AsyncAPI parser, ajv, quicktype, tsc),
# pinned by their lockfile; Go compiles the Go that quicktype generates.
TOOLS_STAMP := tools/contract/node_modules/.installed

.PHONY: demo test lint bench schemas clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

$(TOOLS_STAMP): tools/contract/package-lock.json
	npm ci --prefix tools/contract --no-audit --no-fund --loglevel=error
	@command -v go >/dev/null || { echo "installing Go (Debian's golang-go) for the contract tests"; \
		apt-get update -qq && apt-get install -y -qq golang-go >/dev/null; }
	touch $(TOOLS_STAMP)

demo: $(STAMP)
	$(BIN)/ami-bridge demo

test: $(STAMP) $(TOOLS_STAMP)
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python bench/parse.py
	$(BIN)/python bench/validate.py
	$(BIN)/python bench/journal.py
	$(BIN)/python bench/amqp_ceiling.py
	$(BIN)/python bench/e2e.py
	$(BIN)/python bench/cluster.py
	$(BIN)/python bench/headers.py
	$(BIN)/python bench/replay.py

schemas: $(STAMP)
	$(BIN)/ami-bridge schemas

clean:
	rm -rf $(VENV) build *.egg-info
