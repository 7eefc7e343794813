# The two commands of the README: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat requirements.txt | sha1sum | cut -c1-12)
DEV_STAMP := $(VENV)/.installed-dev-$(shell cat requirements.txt requirements-dev.txt | sha1sum | cut -c1-12)

# Tests use this machine's PostgreSQL and Redis (started if they are down).
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/ipr
TEST_REDIS_URL ?= redis://127.0.0.1:6379/15

.PHONY: setup setup-dev native map-geometry demo test services nginx-module deb agent-wheel bench-collector bench-agent bench-routes bench-ingest fuzz

$(STAMP): requirements.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.txt
	rm -f $(VENV)/.installed-[0-9a-f]*
	touch $@

$(DEV_STAMP): $(STAMP) requirements-dev.txt
	$(BIN)/pip install -q -r requirements-dev.txt
	rm -f $(VENV)/.installed-dev-*
	touch $@

# The compiled parts (setup.py), built in place; without a compiler (or
# OpenSSL's headers) their pure-Python twins run instead (docs/performance.md).
NATIVE_SRC := $(wildcard ipr/routing/dumps/_mrt.c collector/_receive.c)
NATIVE_STAMP := $(VENV)/.native-$(shell cat setup.py $(NATIVE_SRC) 2>/dev/null | sha1sum | cut -c1-12)

$(NATIVE_STAMP): $(STAMP) setup.py $(NATIVE_SRC)
	$(BIN)/python setup.py -q build_ext --inplace 2>&1 | grep -v "^running\|^copying" || true
	rm -f $(VENV)/.native-*
	touch $@

native: $(NATIVE_STAMP)

# The world map's geometry (world-atlas, from npm, pinned and checked) in the
# virtualenv, where ipr serves it; without npm the pages say the map is missing.
map-geometry: $(STAMP)
	packaging/world-atlas $(VENV)/share/ipr/world-atlas

setup: $(STAMP) $(NATIVE_STAMP) map-geometry

setup-dev: $(DEV_STAMP) $(NATIVE_STAMP) map-geometry

# Set up, then run everything on loopback: the collector, a gunicorn site
# with the WSGI agent, real HTTP traffic and synthetic senders; show what
# reached the spool, then ingest and archive it and show the archive.
# SQLite and in-process tasks: nothing but Python.
demo: setup
	$(BIN)/python manage.py migrate --noinput -v0
	$(BIN)/python manage.py demo

services:
	tests/services.sh

# The nginx module, built against Debian's nginx (packages nginx, nginx-dev).
nginx-module:
	nginx_module/build.sh var/nginx_module

# The Debian packages, with Debian's own tools, into dist/: ipr (the server
# side, in a virtualenv under /opt/venvs/ipr) and libnginx-mod-http-ipr (the
# nginx module, built against the installed nginx-dev). Built in a copy of
# the tree (the files git tracks or would track), so the checkout stays clean.
DIST ?= dist
deb:
	packaging/build-debs $(DIST)

# The agent alone, for a web application's own environment (no Django,
# Celery or numpy): dist/ipr_agent-VERSION-py3-none-any.whl
agent-wheel:
	$(PY) -m pip wheel -q --no-deps -w dist ./packaging/agent

test: setup-dev services nginx-module
	DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) $(BIN)/python -m pytest $(PYTEST_ARGS)
	@echo "The nginx module's tests once more, under AddressSanitizer:"
	IPR_NGINX_ASAN=1 $(BIN)/python -m pytest -q tests/test_nginx_module.py tests/test_nginx_retransmits.py

# Long, coverage-guided fuzz runs (atheris) of every reader of outside input:
# 10 million datagrams, a million inputs for each other reader; figures and
# findings in var/fuzz/ (docs/fuzzing.md). The short runs are part of `make
# test`. Narrow it with FUZZ_ARGS, e.g. make fuzz FUZZ_ARGS="--runs 100000 mrt".
fuzz: setup-dev
	$(BIN)/python tests/fuzz/run.py $(FUZZ_ARGS)

bench-collector: setup
	$(BIN)/python bench/collector.py

bench-agent: setup
	$(BIN)/python bench/wsgi_agent.py

# Routing tables: MRT parse against bgpdump, the lookup engine against
# pytricia, and a full table loaded into PostgreSQL and looked up.
bench-routes: setup-dev services
	$(BIN)/python bench/mrt_parse.py
	$(BIN)/python bench/lpm.py
	DATABASE_URL=postgres://postgres@127.0.0.1:5432/ipr_bench $(BIN)/python bench/routes.py

# Spool rows through enrichment into the PostgreSQL archive: a 100k-requests/s
# site's hour against a full table, and a plain COPY of as many rows.
bench-ingest: setup-dev services
	DATABASE_URL=postgres://postgres@127.0.0.1:5432/ipr_bench $(BIN)/python bench/ingest.py
