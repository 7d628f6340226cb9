# fovea-tui: every target installs what it needs into .venv first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
# The peers the benchmarks race (`aws s3 sync`), in a venv of their own: the aws CLI pins
# its own botocore, which must not move the one fovea-tui runs on.
PEERS  := .venv-peers

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
