# One command to set up and see an answer (`make demo`), one to run the tests (`make test`).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

$(BIN)/qa-bot: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e ".[dev,train]"
	touch $@

.PHONY: setup demo test
setup: $(BIN)/qa-bot

demo: setup
	QABOT_DB_PATH=demo.db $(BIN)/qa-bot ingest examples/articles/
	QABOT_DB_PATH=demo.db $(BIN)/qa-bot ask "Who founded the Lakeside Robotics Club?"

test: setup
	$(BIN)/python -m pytest
