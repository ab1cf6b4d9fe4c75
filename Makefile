# Everything a fresh clone needs: `make demo`, `make test`. Nothing is installed by hand.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test tools lint typecheck unit bench bench-quality clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)  ## build the environment and triage the bundled storm (no Kafka)
	$(BIN)/triage demo --out out/demo

test: $(STAMP) tools lint typecheck unit  ## build the environment and run the whole suite

# Java 17+ and Maven (the local Kafka broker), Prometheus, promtool, Alertmanager and amtool:
# installed as Debian packages when run as root, else named with their install command.
tools:
	deploy/test-tools

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

# The Kafka integration tests (tests/integration) need a broker: unless TRIAGE_KAFKA_BOOTSTRAP
# names one, a local one (deploy/kafka/kafka-local) runs for the test run and is stopped after
# it, whatever happens. Without Java the tests skip, except under CI=true, where they fail.
KAFKA_PORT ?= 39092
KAFKA_LOCAL = deploy/kafka/kafka-local --port $(KAFKA_PORT) --data-dir $(CURDIR)/out/kafka-test

unit: $(STAMP)
	@if [ -z "$$TRIAGE_KAFKA_BOOTSTRAP" ] && command -v java >/dev/null 2>&1; then \
	  trap '$(KAFKA_LOCAL) stop' EXIT; \
	  $(KAFKA_LOCAL) start --fresh >/dev/null || exit 1; \
	  export TRIAGE_KAFKA_BOOTSTRAP=127.0.0.1:$(KAFKA_PORT); \
	fi; \
	$(BIN)/pytest -n 2 --doctest-modules src tests

bench: $(STAMP)  ## every benchmark in BENCHMARKS.md (the Alertmanager part needs the Debian package)
	$(BIN)/python benchmarks/bench_intake.py
	$(BIN)/python benchmarks/bench_incidents.py --repeats 3
	$(BIN)/python benchmarks/bench_learning.py
	$(BIN)/python benchmarks/bench_storm.py
	$(BIN)/python benchmarks/bench_quality.py --json out/bench-quality.json
	$(BIN)/python benchmarks/bench_alertmanager.py
	$(BIN)/python benchmarks/bench_streaming.py

bench-quality: $(STAMP)  ## incident quality: triage vs a baseline and an oracle, tuning vs held-out
	$(BIN)/python benchmarks/bench_quality.py --json out/bench-quality.json

clean:
	rm -rf $(VENV) out .pytest_cache .mypy_cache .ruff_cache
