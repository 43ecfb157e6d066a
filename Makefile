# avatar_site: `make run` serves the site with the built-in LiveAvatar emulator,
# `make test` runs every test, `make bench` prints the benchmark table.
SHELL := /bin/bash
HOST ?= 127.0.0.1
PORT ?= 8000
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip

# Django 6 needs Python 3.12+. Probe python3.13, python3.12, pyenv's versions, then python3, and
# take the first that really runs and is new enough (pyenv shims exist but fail when not selected).
PYTHON_CANDIDATES := python3.13 python3.12 \
	$(shell ls -d $$(pyenv root 2>/dev/null || echo $$HOME/.pyenv)/versions/3.1[2-9]*/bin/python3 2>/dev/null | sort -rV) \
	python3
FIND_PYTHON := for p in $(PYTHON_CANDIDATES); do \
	  if "$$p" -c 'import sys; sys.exit(sys.version_info < (3, 12))' >/dev/null 2>&1; then echo "$$p"; break; fi; \
	done

.PHONY: run banner test lint bench install install-test js static migrate services browser clean test-python test-js test-e2e test-integration

$(VENV)/.installed: requirements.txt
	@base=$$($(FIND_PYTHON)); \
	if [ -z "$$base" ]; then \
	  echo "No Python 3.12 or newer found (tried: $(PYTHON_CANDIDATES))."; \
	  echo "Django 6 needs Python >= 3.12: install one (e.g. 'pyenv install 3.13') and run make again."; exit 1; \
	fi; \
	if [ ! -x $(PY) ] || ! $(PY) -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then \
	  rm -rf $(VENV); echo "Creating $(VENV) with $$base ($$($$base --version))"; $$base -m venv $(VENV); \
	fi
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -r requirements.txt
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed requirements-test.txt
	$(PIP) install -q -r requirements-test.txt
	touch $@

install: $(VENV)/.installed js

install-test: $(VENV)/.installed-test js

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# livekit-client is served from static/vendor (built from node_modules, not committed): only the
# parts the page imports, minified by esbuild (about 150 KB gzipped instead of 1.4 MB raw). The page
# joins its room with it against the real service and the built-in emulator alike.
js: static/vendor/livekit-client.min.js

static/vendor/livekit-client.min.js: node_modules/.installed Makefile
	mkdir -p static/vendor
	echo 'export { ConnectionQuality, DisconnectReason, Room, RoomEvent } from "livekit-client";' | \
	  node_modules/.bin/esbuild --bundle --minify --format=esm \
	  --legal-comments=none --log-level=warning --outfile=$@

migrate: install
	$(PY) manage.py migrate --noinput

static: install
	$(PY) manage.py collectstatic --noinput -v0

# Says which LiveAvatar the server talks to; never expands the key itself.
banner:
	@if [ -n "$$LIVEAVATAR_API_KEY" ]; then mode="real service"; else mode="built-in emulator"; fi; \
	echo "Serving on http://$(HOST):$(PORT)/ (LiveAvatar: $$mode). Press Ctrl+C to stop."

# Daphne and the task worker (webhook deliveries, the retention purge) in one command: when Daphne
# stops (Ctrl+C), the worker is stopped too.
run: migrate static banner
	@$(PY) manage.py schedule_purge; \
	$(PY) manage.py db_worker --queue-name='*' --no-reload --verbosity=0 & worker=$$!; \
	trap 'kill $$worker 2>/dev/null; wait $$worker' EXIT INT TERM; \
	$(VENV)/bin/daphne -e tcp:port=$(PORT):interface=$(HOST):backlog=1024 avatar_site.asgi:application

# Start PostgreSQL and Redis when they are installed but down (CI machines start them already).
services:
	@bash scripts/services.sh

# Debian's chromium for the browser tests; never a downloaded browser.
browser:
	@command -v chromium >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || \
	  echo "chromium is missing and could not be installed: browser tests will fail"

test: install-test static services browser
	bash scripts/test.sh

# ruff's lint rules and formatter (pinned in requirements-test.txt); make test runs them too.
lint: install-test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: install-test services
	$(PY) -m bench

clean:
	rm -rf $(VENV) node_modules static/vendor staticfiles test-db.sqlite3*
