# Two entry points (see README): `make demo` and `make test`. Both set up .venv on first use.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3

# Makefile too: a changed extras list must reinstall.
$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,ray,fast,nsfw]'
	touch $@

.PHONY: install demo test lint wheel-check
install: $(VENV)/.installed

demo: install
	$(VENV)/bin/riskrank demo --out runs/demo

test: install
	RISKRANK_FETCH=1 $(PY) -m pytest -q

lint: install
	$(VENV)/bin/ruff check index recall rank riskrank benchmarks tests

wheel-check: install
	bash .ci/wheel_check.sh $(PY)
