# Paddock: `make run` (everything up on http://127.0.0.1:8000) and `make test` (the whole suite).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: run test lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	touch $(STAMP)

# Development defaults: SQLite under var/, a local Redis (started when none answers), DEBUG on.
run: $(STAMP)
	mkdir -p var
	DEBUG=$${DEBUG:-1} $(BIN)/python manage.py runstack

# Real PostgreSQL and Redis (see tests/settings.py for the defaults and how to point elsewhere).
test: $(STAMP)
	@command -v wrk >/dev/null || { echo "make test needs wrk for the benchmark harness's smoke test: apt-get install wrk"; exit 1; }
	$(BIN)/python -m pytest $(PYTEST_ARGS)

BENCH_STAMP := $(VENV)/.bench-stamp
$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[bench,bench-m3,test]'
	command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	touch $(BENCH_STAMP)

# `make bench` (full, ~20 min with the peers), `make bench QUICK=1` (M1 only, < 2 min); see docs/benchmarks.md.
bench: $(BENCH_STAMP)
	$(BIN)/python -m bench.run $(if $(QUICK),--quick) $(if $(PEERS),--peers $(PEERS)) $(BENCH_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy console registry serving workers webhooks bench tests paddock_cli

clean:
	rm -rf var .pytest_cache
