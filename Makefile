# Two commands set up everything on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DB ?= geo-engine.db

.PHONY: install run test lint bench data clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

# Loads the demo chain into $(DB) and runs the tour queries against it.
run: install
	$(BIN)/geo-engine import data/demo_stores.geojson --db $(DB)
	$(BIN)/geo-engine nearest --lat 37.7793 --lon -122.4193 -k 3 --db $(DB)
	$(BIN)/geo-engine locate --lat 37.7955 --lon -122.3937 --accuracy-m 15 --db $(DB)

lint: install
	$(BIN)/ruff check .

test: lint
	$(BIN)/pytest -q

bench: install
	$(BIN)/python benchmarks/bench_index.py

data: install
	$(BIN)/python data/generate.py --help

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
