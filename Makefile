# Two commands a new user needs: `make demo` (the main job, end to end) and `make test`. Both install first.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.hpo-installed
# torch first, pinned to a build that satisfies the package's range, so that pip never pulls a newer one
TORCH_SPEC ?= torch==2.13.0
PYTEST_ARGS ?=

.PHONY: install system-deps test demo lint bench clean docs

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

install: $(STAMP)

# Headless Chromium (Debian's package) for the browser tests of every HTML page we ship.
system-deps:
	@if ! command -v chromium >/dev/null 2>&1; then \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    DEBIAN_FRONTEND=noninteractive dpkg --configure -a >/dev/null 2>&1 || true; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "note: chromium is not installed; browser tests will be skipped"; fi; \
	fi

test: install system-deps
	$(BIN)/python -m pytest $(PYTEST_ARGS)

demo: install
	$(BIN)/hpo demo

lint: install
	$(BIN)/ruff check hpo tests bench examples
	$(BIN)/ruff format --check hpo tests bench examples
	$(BIN)/mypy

# peers for bench/train.py, installed without their dependencies so that torch is not replaced
bench: install
	$(BIN)/python -m pip install -q --no-deps torch-rechub==0.9.0 deepctr-torch==0.3.0
	$(BIN)/python -m pip install -q tqdm requests
	$(BIN)/python bench/models.py
	$(BIN)/python bench/train.py
	$(BIN)/python bench/recsys.py
	$(BIN)/python bench/study.py
	$(BIN)/python bench/workers.py
	$(BIN)/python bench/compile.py
	$(BIN)/python bench/mix.py
	$(BIN)/python bench/load.py
	$(BIN)/python bench/plugins.py
	$(BIN)/python bench/chunk.py
	$(BIN)/python bench/sampler_collapse.py
	$(BIN)/python bench/amp.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hpo-cache

# The documentation (docs/, mkdocs.yml) into build/site, every warning an error; docs/cli.md is written from the
# commands themselves first.
docs: install
	$(BIN)/python -m hpo.cli_docs > docs/cli.md
	$(BIN)/mkdocs build --strict
