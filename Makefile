# The two commands of the README quick start:
#   make demo   install into .venv and rebuild the demo corpus end to end (dvc repro)
#   make test   install the dev extras into .venv and run the test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test install install-dev lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install --quiet -e .

install-dev: $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'

demo: install
	@[ -d .dvc ] || $(BIN)/dvc init --quiet $$(git rev-parse --git-dir >/dev/null 2>&1 || echo --no-scm)
	$(BIN)/dvc config core.analytics false
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro
	$(BIN)/dvc metrics show

test: install-dev
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -q

lint: install-dev
	$(BIN)/ruff check pipeline tests bench

clean:
	rm -rf data models metrics report/*.png shards/train shards/validation shards/holdout shards/*.parquet
