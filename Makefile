# Two commands set up everything on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DB ?= geo-engine.db

.PHONY: install run test lint bench bench-load data clean postgresql

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

# Serves the API at http://127.0.0.1:8000 with the demo chain and campaigns in $(DB).
run: install
	$(BIN)/geo-engine serve --demo --db $(DB)

lint: install
	$(BIN)/ruff check .

# The report test opens the page in a real browser: Debian's chromium, installed when missing.
CHROMIUM := /usr/bin/chromium
$(CHROMIUM):
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium

# The PostgreSQL tests start a throwaway server of their own on 127.0.0.1, in a temporary folder
# (tests/pgcluster.py): Debian's postgresql, installed when missing (the cluster the package
# makes and starts is stopped again: the tests never use it).
POSTGRES := $(firstword $(wildcard /usr/lib/postgresql/*/bin/initdb))
postgresql:
	@test -n "$(POSTGRES)" || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -qq postgresql && (service postgresql stop || true))

test: lint $(CHROMIUM) postgresql
	$(BIN)/pytest -q

bench: install
	$(BIN)/python benchmarks/bench_index.py
	$(BIN)/python benchmarks/bench_ping.py
	$(BIN)/python benchmarks/bench_growth.py

# wrk (from Debian, installed when missing) drives a walking fleet of phones against `serve`
# and a bare FastAPI app in the same run: benchmarks/load/
bench-load: install
	$(BIN)/python benchmarks/load/bench_load.py

data: install
	$(BIN)/python data/generate.py --help

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
