# The two commands of the README: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell sha1sum requirements.txt | cut -c1-12)

# Tests use this machine's PostgreSQL and Redis (started if they are down).
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/ipr
TEST_REDIS_URL ?= redis://127.0.0.1:6379/15

.PHONY: setup demo test services collector bench-collector bench-agent

$(STAMP): requirements.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.txt
	rm -f $(VENV)/.installed-*
	touch $@

setup: $(STAMP)

# Set up, then run everything on loopback: the collector, a gunicorn site
# with the WSGI agent, real HTTP traffic and synthetic senders; then show
# what reached the spool. SQLite and in-process tasks: nothing but Python.
demo: setup
	$(BIN)/python manage.py migrate --noinput -v0
	$(BIN)/python manage.py demo

services:
	tests/services.sh

test: setup services
	DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) $(BIN)/python -m pytest $(PYTEST_ARGS)

bench-collector: setup
	$(BIN)/python bench/collector.py

bench-agent: setup
	$(BIN)/python bench/wsgi_agent.py
