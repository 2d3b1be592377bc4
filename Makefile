# Two entry points for a fresh machine: `make demo` runs the bridge against the built-in
# AMI simulator and the local RabbitMQ; `make test` runs the test suite. Both create the
# virtual environment on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench schemas clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/ami-bridge demo

test: $(STAMP)
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
	$(BIN)/python bench/headers.py
	$(BIN)/python bench/replay.py

schemas: $(STAMP)
	$(BIN)/ami-bridge schemas

clean:
	rm -rf $(VENV) build *.egg-info
