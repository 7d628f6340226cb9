# fovea-tui: every target installs what it needs into .venv first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
# The peers the benchmarks race (`aws s3 sync`), in a venv of their own: the aws CLI pins
# its own botocore, which must not move the one fovea-tui runs on.
PEERS  := .venv-peers

.PHONY: install test test-fast lint demo bench screenshots clean services

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,demo,lint]'
	rm -f $(VENV)/.installed-*
	touch $@

install: $(STAMP)

services:
	bash scripts/ensure-services.sh

test: install services
	$(PY) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

# The unit tier: pure logic (retention, stream parsing, config, formatting, the dashboard model,
# the package's shape), no service, no terminal. Seconds, not minutes.
FAST_TESTS := tests/test_retention.py tests/test_stack_timing.py tests/test_backup_stream.py tests/test_config.py \
	tests/test_cli_progress.py tests/test_restore_units.py tests/test_structure.py tests/test_status_policy.py tests/test_restore_discards.py
test-fast: install
	$(PY) -m pytest -q -p no:cacheprovider -m "not services" $(FAST_TESTS) $(PYTEST_ARGS)

# ruff (pyflakes, import order, bugbear, pyupgrade), mypy, and the import contracts in pyproject.toml.
lint: install
	$(VENV)/bin/ruff check fovea_tui tests benchmarks scripts
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

demo: install
	$(VENV)/bin/fovea-tui demo

$(PEERS)/bin/aws:
	$(PYTHON) -m venv $(PEERS)
	$(PEERS)/bin/python -m pip install --quiet --upgrade pip
	$(PEERS)/bin/python -m pip install --quiet awscli

bench: install services $(PEERS)/bin/aws
	$(PY) benchmarks/run.py

screenshots: install
	$(PY) -m fovea_tui.tui.screenshots screenshots/

clean:
	rm -rf $(VENV) $(PEERS) .pytest_cache
