# One command to set up and see an answer (`make demo`), one to run the tests (`make test`); `make lint` checks style
# and types, `make wheel-check` builds the wheel and runs `qa-bot --help` from it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

$(BIN)/qa-bot: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -c constraints.txt -e ".[dev]"
	touch $@

# The demo answers with the reader shipped in models/minilm-squad-reader (the default), from its own database.
DEMO_ENV := QABOT_DB_PATH=demo.db

.PHONY: setup demo test lint wheel-check
setup: $(BIN)/qa-bot

demo: setup
	$(DEMO_ENV) $(BIN)/qa-bot ingest examples/articles/
	$(DEMO_ENV) $(BIN)/qa-bot ask "Who founded the Lakeside Robotics Club?"
	$(DEMO_ENV) $(BIN)/qa-bot ask "How much does a ferry ticket cost?"

test: setup
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The wheel as users get it, installed into a throwaway folder: qa-bot --help must run from there, and the
# prompts and the shipped reader must be inside it.
WHEEL_DIR := build/wheel-check
wheel-check: setup
	rm -rf $(WHEEL_DIR)
	$(BIN)/pip wheel --quiet --no-deps --no-build-isolation --wheel-dir $(WHEEL_DIR) .
	$(BIN)/pip install --quiet --no-deps --target $(WHEEL_DIR)/site $(WHEEL_DIR)/qa_bot-*.whl
	cd /tmp && PYTHONPATH=$(CURDIR)/$(WHEEL_DIR)/site $(CURDIR)/$(WHEEL_DIR)/site/bin/qa-bot --help > /dev/null
	cd /tmp && PYTHONPATH=$(CURDIR)/$(WHEEL_DIR)/site $(CURDIR)/$(BIN)/python -c "import bot, bot.core.messages as m, \
	  bot.settings as s; assert bot.__file__.startswith('$(CURDIR)/$(WHEEL_DIR)/site/'), bot.__file__; m.render('help'); \
	  assert s.shipped_reader_dir(), 'no shipped reader in the wheel'"
	@echo "wheel ok: $$(ls $(WHEEL_DIR)/*.whl)"
