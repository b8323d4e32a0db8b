# cti-agent: run the demo, test, lint, benchmark (GNU make on Debian).
#
#   make run [SEATS=2] [ARGS=..]  the demo floor: the centre and SEATS simulated seats (no root)
#   make test [PYTEST_ARGS=-x]    system packages (if missing), venv, unit + integration tests
#   make lint | bench | clean | distclean
#
# The venv is reinstalled only when pyproject.toml is newer than its stamp file.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

PYTHON ?= python3
VENV ?= .venv
ARGS ?=
# The demo floor's seats; SEATS= (empty) runs one seat alone, without a centre.
SEATS ?= 2
PYTEST_ARGS ?=
# Quiet, but pip still prints its errors.
PIP_FLAGS ?= --quiet --disable-pip-version-check --progress-bar off
LINT_PATHS := agent plugins storage tests

PIP := $(VENV)/bin/python -m pip
RUN_STAMP := $(VENV)/.stamp-install
TEST_STAMP := $(VENV)/.stamp-install-test

.PHONY: help run test test-unit test-integration venv venv-test system-deps lint bench clean distclean

help:
	@sed -n '1,7s/^# \{0,1\}//p' Makefile

# -- the virtualenv -------------------------------------------------------------------------

$(VENV)/bin/python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || { \
	  echo "cti-agent needs Python 3.11 or newer; '$(PYTHON)' is: $$($(PYTHON) -V 2>&1)" >&2; exit 1; }
	@$(PYTHON) -c 'import venv, ensurepip' 2>/dev/null || { \
	  echo "Python's venv module is missing: install it with 'apt-get install python3-venv' (as root)," >&2; \
	  echo "or run make with PYTHON=<a python 3.11+ that has venv>." >&2; exit 1; }
	@echo "creating $(VENV) with $$($(PYTHON) -V)"
	@$(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); \
	  echo "'$(PYTHON) -m venv' failed; on Debian: apt-get install python3-venv" >&2; exit 1; }

# A test install also satisfies `make run`: it is a superset.
$(RUN_STAMP): pyproject.toml | $(VENV)/bin/python
	@if [ -f $(TEST_STAMP) ] && [ $(TEST_STAMP) -nt pyproject.toml ]; then :; else \
	  echo "installing cti-agent into $(VENV)"; $(PIP) install $(PIP_FLAGS) -e .; fi
	@touch $@

$(TEST_STAMP): pyproject.toml | $(VENV)/bin/python
	@echo "installing cti-agent[test] into $(VENV)"
	@$(PIP) install $(PIP_FLAGS) -e '.[test]'
	@touch $@ $(RUN_STAMP)

venv: $(RUN_STAMP)
venv-test: $(TEST_STAMP)

# -- targets ----------------------------------------------------------------------------------

run: $(RUN_STAMP)
	$(VENV)/bin/cti-agent demo $(if $(SEATS),--seats $(SEATS)) $(ARGS)

system-deps:
	@bash tests/system-deps.sh

# Unit tests run with sockets disabled (tests/unit/conftest.py, so also when one file is run
# by hand; unix sockets stay allowed because asyncio's event loop needs a socketpair);
# integration tests may open real ones. Two runs, each with its own summary line, which
# .ci/run checks. Both always run; the target fails if either does (including "no tests ran").
test: system-deps $(TEST_STAMP)
	@rc=0; \
	$(MAKE) test-unit || rc=1; \
	$(MAKE) test-integration || rc=1; \
	exit $$rc

test-unit: $(TEST_STAMP)
	@echo ">>> pytest tests/unit (sockets disabled)"
	@$(VENV)/bin/pytest tests/unit $(PYTEST_ARGS)

test-integration: $(TEST_STAMP)
	@echo ">>> pytest tests/integration"
	@$(VENV)/bin/pytest tests/integration $(PYTEST_ARGS)

lint: $(TEST_STAMP)
	@rc=0; \
	$(VENV)/bin/ruff check $(LINT_PATHS) || rc=1; \
	$(VENV)/bin/ruff format --check $(LINT_PATHS) || rc=1; \
	$(VENV)/bin/mypy || rc=1; \
	exit $$rc

# Benchmarks print numbers; they are not pass/fail timing tests. A script that crashes fails.
bench: system-deps $(TEST_STAMP)
	@shopt -s nullglob; rc=0; scripts=(tests/bench/bench_*.py); \
	if [ $${#scripts[@]} -eq 0 ]; then echo "no tests/bench/bench_*.py to run" >&2; exit 1; fi; \
	for script in "$${scripts[@]}"; do \
	  echo ">>> $$script"; $(VENV)/bin/python "$$script" || { echo "FAILED: $$script" >&2; rc=1; }; \
	done; \
	exit $$rc

clean:
	rm -rf build dist .pytest_cache .ruff_cache .mypy_cache .hypothesis *.egg-info
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
