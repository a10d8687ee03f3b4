# Two set-up commands: `make demo` and `make test`. Both create .venv at the repo root.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip

.PHONY: demo test test-fast typecheck lint format bench clean venv dev-venv chromium fuzz locks

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(PIP) install -q -e ".[demo]"
	touch $@

# quantus (a test-only cross-check) pins opencv-python, which clashes with the headless build over
# the cv2 module, so it is installed without its dependencies (they are all in the dev extra).
$(VENV)/.installed-dev: $(BIN)/python pyproject.toml
	$(PIP) install -q -e ".[dev,demo]"
	$(PIP) install -q --no-deps "quantus==0.6.0"
	touch $@ $(VENV)/.installed

venv: $(VENV)/.installed
dev-venv: $(VENV)/.installed-dev

demo: $(VENV)/.installed
	$(BIN)/edgesal demo --out out/demo

# The web-view and report tests drive a real headless browser (Debian's chromium).
chromium:
	@command -v chromium >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)

# Everything: two xdist workers (CI machines have 2 cores; tests/conftest.py starts the longest
# tests first), then the serial tests alone.
test: $(VENV)/.installed-dev chromium
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -q -n 2 -m "not serial"; \
	  status=$$?; $(BIN)/python -m pytest -q -m serial && exit $$status

# The inner loop: no package installs beyond the dev venv, no browser, no Ray, no slow tests.
test-fast: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -q -m "not slow and not browser and not network and not ray"

# Types of the core and the runtimes (files and exclusions: [tool.mypy] in pyproject.toml).
typecheck: $(VENV)/.installed-dev
	$(BIN)/mypy

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(VENV)/.installed-dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(VENV)/.installed-dev
	$(BIN)/python benchmarks/bench_saliency.py

# Every fuzz harness of tests/fuzz for FUZZ_SECONDS each (CI runs them for a few seconds in pytest).
FUZZ_SECONDS ?= 300
fuzz: $(VENV)/.installed-dev
	$(BIN)/python -m tests.fuzz.run --seconds $(FUZZ_SECONDS)

# Hash-pinned device installs (all platforms, Python >= 3.10): pip install --require-hashes -r FILE
locks: $(VENV)/.installed-dev
	for p in device device-litert; do $(BIN)/uv pip compile pyproject.toml --extra $$p \
	  --generate-hashes --universal --python-version 3.10 --index-url https://pypi.org/simple \
	  -c requirements/constraints.txt \
	  --custom-compile-command "make locks" -o requirements/$$p.lock -q; done

clean:
	rm -rf $(VENV) out build *.egg-info
