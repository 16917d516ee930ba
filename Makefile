# `make demo` (offline), `make demo-serve` (with Label Studio and the app), `make test`.
# Each creates .venv and installs what it needs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo demo-serve test lint install clean bench lock

# Everything `make test` needs (the `dev` extra), at the versions in requirements.lock: the ones
# the tests last passed with, so a fresh clone (and CI) gets what was tested.
$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c requirements.lock -e '.[dev]'
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

# Regenerate requirements.lock from the venv the tests passed in: every package `.[dev]` needs
# (pip resolves the tree, constrained to what is installed), pinned to its installed version.
# After changing dependencies: install them into .venv, `make test`, then `make lock`.
lock: $(STAMP)
	$(BIN)/pip freeze --exclude-editable > $(VENV)/installed.txt
	$(BIN)/pip install --quiet --dry-run --ignore-installed -c $(VENV)/installed.txt \
		--report $(VENV)/lock-report.json '.[dev]'
	$(BIN)/python -c "$$LOCK_FROM_REPORT" $(VENV)/lock-report.json > requirements.lock

define LOCK_FROM_REPORT
import json, sys
report = json.load(open(sys.argv[1]))
pins = sorted((i["metadata"]["name"].lower(), i["metadata"]["version"]) for i in report["install"])
print("# The versions `make test` passed with; `make install` installs from this. Regenerate with")
print("# `make lock` (see the Makefile) after changing dependencies in pyproject.toml.")
print("\n".join(f"{name}=={version}" for name, version in pins if name != "annotator"))
endef
export LOCK_FROM_REPORT

clean:
	rm -rf $(VENV) demo
