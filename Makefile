# Everything a fresh clone needs: `make demo`, `make test`. Nothing is installed by hand.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck unit bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)  ## build the environment and triage the bundled storm (no Kafka)
	$(BIN)/triage demo --out out/demo

test: $(STAMP) lint typecheck unit  ## build the environment and run the whole suite

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest -n 2 --doctest-modules src tests

bench: $(STAMP)  ## every benchmark in BENCHMARKS.md (the Alertmanager part needs the Debian package)
	$(BIN)/python benchmarks/bench_intake.py
	$(BIN)/python benchmarks/bench_incidents.py --repeats 3
	$(BIN)/python benchmarks/bench_learning.py

clean:
	rm -rf $(VENV) out .pytest_cache .mypy_cache .ruff_cache
