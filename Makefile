# mskus: two commands on a fresh machine.
#   make demo   create .venv, install, run the node end to end on sample_data/
#               (stand-in PACS -> C-STORE -> node -> analysis -> SR back -> table)
#   make test   create .venv, install, install Debian test peers (as root), run the suite
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.mskus-installed
PYTEST_ARGS ?=

.PHONY: venv demo test system-tools sample-data clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

system-tools:
	bash scripts/install-debian-tools.sh

demo: venv
	$(PY) -m mskus.demo --out demo-out

test: venv system-tools
	$(PY) -m ruff check .
	$(PY) -m mypy
	$(PY) -m pytest $(PYTEST_ARGS)

sample-data: venv
	$(PY) sample_data/generate.py

clean:
	rm -rf $(VENV) demo-out .pytest_cache
