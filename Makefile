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

# The test files that start Ray run in a process of their own: after a Ray cluster shut down,
# a later test of the same process died of a segmentation fault in 2 of ~15 CI runs (stop 49;
# 2026-12-07 in tests/rank/test_review.py, at a garbage collection), cause not found.
RAY_TESTS := tests/rank/test_ray_engine.py tests/rank/test_engine.py
test: install
	RISKRANK_FETCH=1 $(PY) -m pytest -q $(addprefix --ignore=,$(RAY_TESTS))
	RISKRANK_FETCH=1 $(PY) -m pytest -q $(RAY_TESTS)

lint: install
	$(VENV)/bin/ruff check index recall rank riskrank benchmarks tests

wheel-check: install
	bash .ci/wheel_check.sh $(PY)
