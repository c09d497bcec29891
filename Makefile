# `make serve` and `make test` work on a fresh clone: each sets up what it
# needs (venv, Python deps, Node deps) and skips steps that are up to date.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 3042
WEB := clients/web
WEB_SOURCES := $(wildcard $(WEB)/src/*) $(wildcard $(WEB)/public/*) $(WEB)/index.html $(WEB)/vite.config.js clients/js/relay-client.js

.PHONY: serve test quick test-quick lint bench bench-cluster clean web wheel

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[test]'
	touch $(VENV)/.installed $@

tests/interop/node_modules/.installed: tests/interop/package.json tests/interop/package-lock.json
	cd tests/interop && npm ci --no-audit --no-fund --loglevel=error
	touch $@

bench/node_modules/.installed: bench/package.json bench/package-lock.json
	cd bench && npm ci --no-audit --no-fund --loglevel=error
	touch $@

$(WEB)/node_modules/.installed: $(WEB)/package.json $(WEB)/package-lock.json
	cd $(WEB) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

$(WEB)/dist/index.html: $(WEB)/node_modules/.installed $(WEB_SOURCES)
	cd $(WEB) && npm run --silent build -- --logLevel warn
	touch $@

# The web app needs Node; without it the server still runs and its page says how to build.
web:
	@if command -v npm >/dev/null 2>&1; then \
	  $(MAKE) --no-print-directory $(WEB)/dist/index.html; \
	else \
	  echo "warning: npm not found: serving without the web app (install Node.js 20+)" >&2; \
	fi

# dist/inkwire-*.whl with the web app inside: `pip install` it anywhere, no Node needed there
# (a stale inkwire.egg-info would add the files its SOURCES.txt lists to the sdist)
wheel: $(VENV)/.installed-test $(WEB)/dist/index.html
	rm -rf inkwire.egg-info build
	$(BIN)/python -m build --outdir dist .

serve: $(VENV)/.installed web
	$(BIN)/inkwire serve --host $(HOST) --port $(PORT)

test: $(VENV)/.installed-test tests/interop/node_modules/.installed web
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/pytest

# The edit-test loop: ruff, then the in-process tests (no Chromium, Node or inkwire
# processes, nothing marked slow; see tests/markers.py). `make test` is the full gate.
QUICK_TESTS := not browser and not node and not processes and not slow

quick test-quick: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/pytest -m "$(QUICK_TESTS)" --durations=5

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: $(VENV)/.installed-test bench/node_modules/.installed
	$(BIN)/python bench/yjs_fanout.py

# Two nodes sharing a private Redis (redis-server must be installed) against one node.
bench-cluster: $(VENV)/.installed-test
	$(BIN)/python bench/cluster_fanout.py

# Draw-to-peer-render latency in headless Chromium (Debian's /usr/bin/chromium), inkwire vs Node.
.PHONY: bench-web
bench-web: $(VENV)/.installed-test bench/node_modules/.installed web
	$(BIN)/python bench/draw_latency.py

clean:
	rm -rf $(VENV) tests/interop/node_modules bench/node_modules $(WEB)/node_modules $(WEB)/dist \
	  dist build inkwire.egg-info
