# Two commands: `make demo` and `make test`. Each creates .venv and installs what it needs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint install clean bench

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/annotator demo --db demo/annotator.db

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
