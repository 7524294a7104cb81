# One command to set up and see an answer (`make demo`), one to run the tests (`make test`).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

$(BIN)/qa-bot: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -c constraints.txt -e ".[dev]"
	touch $@

# Until the project's own reader ships in models/, the demo reads with the stand-in at ../shared/models/dev-reader.
DEMO_READER := $(if $(wildcard models/minilm-squad-reader/config.json),,$(wildcard ../shared/models/dev-reader))
DEMO_ENV := QABOT_DB_PATH=demo.db $(if $(DEMO_READER),QABOT_READER_MODEL=$(DEMO_READER))

.PHONY: setup demo test
setup: $(BIN)/qa-bot

demo: setup
	$(DEMO_ENV) $(BIN)/qa-bot ingest examples/articles/
	$(DEMO_ENV) $(BIN)/qa-bot ask "Who founded the Lakeside Robotics Club?"
	$(DEMO_ENV) $(BIN)/qa-bot ask "How much does a ferry ticket cost?"

test: setup
	$(BIN)/python -m pytest
