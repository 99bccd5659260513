# Two commands set everything up on a fresh machine with only Python 3.11:
#   make demo   create .venv, install core + plugins, run the example exports on local sandboxes
#   make test   create .venv, install everything (the Dagster integration too) with test extras, run every test
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test benchmark clean

$(STAMP): pyproject.toml plugins/braze/pyproject.toml plugins/sendinblue/pyproject.toml plugins/webhook/pyproject.toml \
		integrations/dagster/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]' -e 'plugins/braze[test]' -e 'plugins/sendinblue[test]' \
		-e 'plugins/webhook[test]' -e 'integrations/dagster[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/python configs/demo.py

test: $(STAMP)
	$(BIN)/python -m pytest

benchmark: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) .segship configs/.segship dist build
