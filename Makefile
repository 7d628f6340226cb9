# fovea-tui: every target installs what it needs into .venv first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: install test demo bench screenshots clean services

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,demo]'
	rm -f $(VENV)/.installed-*
	touch $@

install: $(STAMP)

services:
	bash scripts/ensure-services.sh

test: install services
	$(PY) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

demo: install
	$(VENV)/bin/fovea-tui demo

bench: install services
	$(PY) benchmarks/run.py

screenshots: install
	$(PY) -m fovea_tui.tui.screenshots screenshots/

clean:
	rm -rf $(VENV) .pytest_cache
