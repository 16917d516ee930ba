# `make demo` (offline), `make demo-serve` (with Label Studio and the app), `make test`.
# Each creates .venv and installs what it needs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo demo-serve test lint install clean bench

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/annotator demo --db demo/annotator.db

# The whole loop: Label Studio (installed once, ~1 GB) for two reviewers and the app; Ctrl-C stops.
demo-serve: $(STAMP)
	$(BIN)/annotator labelstudio install
	$(BIN)/annotator demo --db demo/annotator.db --serve

test: $(STAMP)
	$(BIN)/ruff check annotator tests bench
	$(BIN)/pytest -q

bench: $(STAMP)
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/extract.py
	$(BIN)/python bench/faults.py
	$(BIN)/python bench/agreement.py
	$(BIN)/python bench/labelstudio.py
	$(BIN)/python bench/reviewer_instances.py
	$(BIN)/python bench/app.py

clean:
	rm -rf $(VENV) demo
