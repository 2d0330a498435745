# Every target builds .venv from nothing when it is missing, then runs.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench bench-quick bench-peer clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,frameworks]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m cascadeflow demo

test: $(STAMP)
	$(PY) -m ruff check cascadeflow tests examples benchmarks
	$(PY) -m mypy
	$(PY) -m pytest -q

lint: $(STAMP)
	$(PY) -m ruff check cascadeflow tests examples benchmarks
	$(PY) -m mypy

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

bench: $(STAMP)
	$(PY) -m benchmarks

bench-quick: $(STAMP)
	$(PY) -m benchmarks --quick --out benchmarks/results/quick.json

# the peer (the unrelated cascadeflow on PyPI) goes into a throw-away venv of its own, never .venv
bench-peer: $(STAMP)
	$(PY) -m benchmarks.peer --out benchmarks/results/peer.json
