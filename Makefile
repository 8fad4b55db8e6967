# Two commands on a fresh machine:
#   make demo   - create .venv, install Workbench, run the end-to-end demo on ./.workbench
#   make test   - create .venv, install Workbench with test tools, run lint + the whole test suite
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: setup demo test lint bench screenshots clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(VENV)/bin/workbench demo

lint: setup
	$(VENV)/bin/ruff check workbench tests benchmarks docs

test: setup lint
	$(VENV)/bin/pytest

bench: setup
	$(PY) -m pip install --quiet -r benchmarks/requirements.txt
	$(PY) -m benchmarks

screenshots: setup
	$(PY) docs/screenshots.py

clean:
	rm -rf $(VENV) .workbench build dist workbench/labextension extension/lib
