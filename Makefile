# Two commands from a fresh clone: `make run` and `make test` (see README.md).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 8000

.PHONY: install run test lint check-services migrate seed bench clean

$(VENV)/.installed: pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c requirements.lock -e ".[dev]"
	touch $@

install: $(VENV)/.installed

# The embedded default: no environment needed (SQLite, in-memory channel layer, eager tasks).
run: install
	env -u DATABASE_URL -u REDIS_URL $(PY) manage.py migrate --noinput
	env -u DATABASE_URL -u REDIS_URL $(PY) manage.py seed_demo
	env -u DATABASE_URL -u REDIS_URL $(PY) manage.py serve --host 0.0.0.0 --port $(PORT)

PSYCOPG3_TESTS = tests/core/test_prepared.py tests/core/test_events.py tests/messaging/test_send.py \
	tests/messaging/test_send_batches.py tests/messaging/test_send_batches_locks.py \
	tests/messaging/test_send_batches_contention.py tests/messaging/test_send_round_trips.py \
	tests/core/test_dbpool_psycopg3.py

# The whole suite against PostgreSQL and Redis (DATABASE_URL / REDIS_URL override the defaults),
# then the tests of what differs by database driver again under psycopg 3.
test: install
	$(PY) scripts/check_services.py
	$(MAKE) --no-print-directory lint
	$(PY) -m pytest -n 2 --dist loadfile
	@# The ASGI server's driver (psycopg 3: pipelines, bound parameters) for the code that differs by driver.
	DB_DRIVER=psycopg $(PY) -m pytest -n 2 --dist loadfile $(PSYCOPG3_TESTS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports
	env -u DATABASE_URL -u REDIS_URL SUPERAPP_VAR_DIR=$$(mktemp -d) $(PY) manage.py makemigrations --check --dry-run
	DJANGO_SETTINGS_MODULE=superapp.settings_test $(PY) manage.py spectacular --validate --fail-on-warn --file /dev/null

check-services: install
	$(PY) scripts/check_services.py

bench: install
	$(PY) -m bench all

clean:
	rm -rf $(VENV) var
