# ConflictDesk: every entry point an operator or CI needs.
SHELL := /bin/bash
PY := .venv/bin/python
SITES ?= 2
DEMO_SITES ?= 5
export PIP_CACHE_DIR ?= $(HOME)/.cache/pip

.PHONY: demo venv services stop status migrate test test-unit lock

## demo: install what is missing, start every server, the engine and the desk, seed synthetic data
demo: venv
	deploy/demo.sh start $(DEMO_SITES)

venv: .venv/.installed
.venv/.installed: requirements.txt
	@test -x $(PY) || python3 -m venv .venv
	.venv/bin/pip install -q -r requirements.txt
	@touch $@

services:
	deploy/services.sh start $(SITES)

stop:
	deploy/demo.sh stop
	deploy/services.sh stop

status:
	deploy/services.sh status

migrate: venv
	$(PY) manage.py migrate --noinput

## test: the whole suite, against the real servers (started here, reused by all tests)
test: venv services
	deploy/chromium.sh
	$(PY) -m pytest

test-unit: venv
	$(PY) -m pytest -m "not integration"

lock:
	.venv/bin/pip install -q pip-tools && .venv/bin/pip-compile -q --strip-extras -o requirements.txt requirements.in
