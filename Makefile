# Two commands set up everything on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DB ?= geo-engine.db

.PHONY: install run test lint bench bench-load data clean postgresql

install: $(STAMP)

# The console's scripts (MapLibre GL, Terra Draw, PMTiles) come from the npm registry now, once,
# and the engine serves them: the console needs no internet when it runs.
CONSOLE := api/static/console
$(STAMP): pyproject.toml $(CONSOLE)/package.json $(CONSOLE)/package-lock.json
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	cd $(CONSOLE) && npm ci --no-audit --no-fund --loglevel=error
	touch $(STAMP)

# Serves the API at http://127.0.0.1:8000 with the demo chain and campaigns in $(DB), and a week
# of simulated phones for the console (http://127.0.0.1:8000/console) to show results.
run: install
	$(BIN)/geo-engine serve --demo --seed-week --db $(DB)

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
