# ConflictDesk: every entry point an operator or CI needs.
SHELL := /bin/bash
PY := .venv/bin/python
SITES ?= 2
DEMO_SITES ?= 5
export PIP_CACHE_DIR ?= $(HOME)/.cache/pip
# Every target here is local development (servers on 127.0.0.1, the dev database): the
# settings are production unless DJANGO_DEBUG=1, so ask for the development defaults.
export DJANGO_DEBUG ?= 1

.PHONY: demo demo-reset venv services stop status migrate test test-unit test-db lock

## demo: install what is missing, start every server, the engine and the desk, seed synthetic data
demo: venv
	deploy/demo.sh start $(DEMO_SITES)

## demo-reset: stop everything and drop the demo's data (sites, HAPI, engine database, broker queue);
## the next `make demo` seeds afresh
demo-reset:
	deploy/demo.sh reset

venv: .venv/.installed
# requirements-dev.txt is the complete development lock: the runtime pins of requirements.txt (all
# the production image gets) plus tests and tools. Every file pip fetches must match a locked hash.
.venv/.installed: requirements.txt requirements-dev.txt
	@test -x $(PY) || python3 -m venv .venv
	.venv/bin/pip install -q --require-hashes -r requirements-dev.txt
	@touch $@

## services: the test servers, open on loopback (EHRBASE_AUTH=none, HAPI_AUTH=none): the suite's sites
## carry no credentials. The demo (deploy/demo.sh) and compose run both behind basic auth.
services:
	EHRBASE_AUTH=$${EHRBASE_AUTH:-none} HAPI_AUTH=$${HAPI_AUTH:-none} deploy/services.sh start $(SITES)

stop:
	deploy/demo.sh stop
	deploy/services.sh stop

## status: every server (PostgreSQL, Redis, each EHRbase, HAPI) and every demo process (supervisorctl) with its state
status:
	-deploy/services.sh status
	deploy/demo.sh status

migrate: venv
	$(PY) manage.py migrate --noinput

## test: the whole suite, against the real servers (started here, reused by all tests)
test: venv services
	deploy/chromium.sh
	$(PY) -m pytest

## test-unit: no server at all (no PostgreSQL, Redis, EHRbase, HAPI or Chromium). The database and broker
## URLs point at a closed port, so a test that reaches for a server fails here instead of passing by luck.
## tests/conftest.py marks what needs which server (db, integration, browser).
test-unit: venv
	DATABASE_URL=postgres://conflictdesk:none@127.0.0.1:1/no_server_in_test_unit \
	CELERY_BROKER_URL=redis://127.0.0.1:1/0 CONFLICTDESK_CACHE_URL=locmem:// \
	$(PY) -m pytest -m "not integration and not db and not browser"

## test-db: the tests that need PostgreSQL only (started here); no Redis, EHRbase, HAPI or Chromium
test-db: venv
	deploy/postgres.sh start
	CELERY_BROKER_URL=redis://127.0.0.1:1/0 CONFLICTDESK_CACHE_URL=locmem:// \
	$(PY) -m pytest -m "db and not integration and not browser"

## lock: re-pin requirements*.txt from requirements*.in, with the sha256 of every file PyPI offers for each pin
## (installs use --require-hashes). Existing pins are kept; `make lock LOCK_ARGS=--upgrade` moves them.
PIP_COMPILE = .venv/bin/pip-compile -q --strip-extras --generate-hashes --allow-unsafe --no-emit-find-links $(LOCK_ARGS)
lock:
	.venv/bin/pip install -q pip-tools && $(PIP_COMPILE) -o requirements.txt requirements.in \
	  && $(PIP_COMPILE) -o requirements-dev.txt requirements-dev.in
