#!/usr/bin/env bash
# Every test: Python (SQLite + in-memory layer, including browser e2e), JavaScript unit tests, then
# the integration suite on PostgreSQL + Redis.
set -euo pipefail
PY=.venv/bin/python
status=0

echo "== Lint (ruff check, ruff format --check)"
$PY -m ruff check . || status=1
$PY -m ruff format --check . || status=1

echo "== JavaScript unit tests (node --test)"
node --test tests/js/ || status=1

echo "== Python tests (SQLite, in-memory channel layer, e2e in Chromium)"
$PY -m pytest -q || status=1

if pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null && redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  echo "== Integration tests (PostgreSQL + Redis)"
  psql -h 127.0.0.1 -U postgres -tc "SELECT 1 FROM pg_database WHERE datname='avatar_site'" | grep -q 1 || \
    psql -h 127.0.0.1 -U postgres -c "CREATE DATABASE avatar_site" >/dev/null
  DATABASE_URL=postgres://postgres@127.0.0.1:5432/avatar_site REDIS_URL=redis://127.0.0.1:6379/1 \
    $PY -m pytest -q -m "integration or not e2e" || status=1
else
  echo "PostgreSQL or Redis is not reachable: integration tests cannot run"; status=1
fi
exit $status
