# One entry point for every job. `make test` and `make demo` work on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test check lint typecheck bench redis-server clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

redis-server:
	@scripts/ensure-redis-server

demo: $(STAMP)
	@scripts/ensure-redis-server --optional
	$(VENV)/bin/redsync demo

test: $(STAMP) redis-server
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check redsync_core redsync_django redsync_celery redsync_flask benchmarks

typecheck: $(STAMP)
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy --strict benchmarks

check: lint typecheck test

bench: $(STAMP) redis-server
	$(PY) -m benchmarks $(BENCH_ARGS)

# The compatibility matrix (noxfile.py): Python 3.10-3.13, dependency floors, redis-py majors.
.PHONY: matrix test-servers
matrix: $(STAMP) redis-server
	$(VENV)/bin/nox $(NOX_ARGS)

# The server-facing suites against each server kind: Redis and Valkey (scripts/server-matrix).
test-servers: $(STAMP)
	VENV=$(VENV) scripts/server-matrix $(SERVERS)

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .ruff_cache
