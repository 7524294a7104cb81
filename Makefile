# One command to set up and see an answer (`make demo`), one to run the tests (`make test`).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

$(BIN)/qa-bot: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -c constraints.txt -e ".[dev]"
	touch $@

# The demo answers with the reader shipped in models/minilm-squad-reader (the default), from its own database.
DEMO_ENV := QABOT_DB_PATH=demo.db

.PHONY: setup demo test
setup: $(BIN)/qa-bot

demo: setup
	$(DEMO_ENV) $(BIN)/qa-bot ingest examples/articles/
	$(DEMO_ENV) $(BIN)/qa-bot ask "Who founded the Lakeside Robotics Club?"
	$(DEMO_ENV) $(BIN)/qa-bot ask "How much does a ferry ticket cost?"

test: setup
	$(BIN)/python -m pytest
