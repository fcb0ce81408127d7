# The two commands a newcomer needs: `make run` and `make test` (see README).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TEST_STACK := --home .stack-test --kafka-port 29092 --controller-port 29093 --registry-port 28081

.PHONY: install run test lint definitions-check unit integration gateway worker executor receiver console console-screenshots apikeys demo bench-ingest bench-stream bench-floor bench-rebuild bench-delivery bench-stages observe observability-check stack-up stack-down stack-status stack-reset schemas-check clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required"'
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed

## Run the platform on local defaults (Kafka, registry, topics, schemas, services); Ctrl-C stops it.
run: install
	scripts/run

## Lint, type-check, then every test (integration tests against a real broker and registry).
test: install lint definitions-check observability-check
	scripts/test

## Validate audience/journey/governance definitions and print their version.
definitions-check: install
	$(PY) -m streams.activation.cli validate

## Alert rules and scrape configs through promtool (Debian's prometheus package).
observability-check:
	scripts/observability-check

## Prometheus (system package) scraping the processes make run starts, with the alert rules.
observe:
	scripts/observe

lint: install
	$(VENV)/bin/ruff check streams agents tables ingest activation_client bench tests console scripts/stack scripts/demo scripts/deadletters scripts/console-screenshots
	$(VENV)/bin/mypy

unit: install
	scripts/test tests/unit

integration: install
	scripts/test tests/integration

## The ingestion gateway alone (the stack must be up: `make stack-up`).
gateway: install
	$(PY) -m ingest

## One stream worker (profiles API on 127.0.0.1:6066).
worker: install
	$(PY) -m streams.app worker -l info

## The delivery executor (calls destinations; scale it by running more).
executor: install
	$(PY) -m streams.delivery run

## The operator console alone (http://127.0.0.1:8088; make run starts it too).
console: install
	$(PY) -m console

## A screenshot of each console page into docs/console/ (needs `make run` and chromium).
console-screenshots: install
	scripts/console-screenshots

## The local webhook receiver make run starts (checks signatures, prints requests).
receiver: install
	$(PY) -m streams.delivery receiver

apikeys: install
	scripts/apikeys $(ARGS)

## The guide's churn example through the HTTP API (needs `make run` in another terminal).
demo: install
	scripts/demo

## Benchmarks print ratios against a baseline measured in the same run; options go in
## ARGS, e.g. `make bench-stream ARGS="--events 40000 --identity-partitions 1"`.
bench-ingest: install
	$(PY) bench/ingest.py $(ARGS)

bench-stream: install
	$(PY) -m bench.stream $(ARGS)

## CPU-us per event of each stage's own work (pure stages, no broker).
bench-stages: install
	$(PY) -m bench.stages $(ARGS)

## What the speed targets leave: bare exactly-once hops and the libraries' own calls,
## against the plain Faust agent of the same run (docs/speed-floor.md).
bench-floor: install
	$(PY) -m bench.floor $(ARGS)

## Time to rebuild 1,000,000 profiles from the changelog, and the worker's RSS holding them.
bench-rebuild: install
	$(PY) -m bench.rebuild $(ARGS)

## Actions/s one executor delivers, against a plain aiohttp loop in the same run.
bench-delivery: install
	$(PY) -m bench.delivery $(ARGS)

stack-up:
	scripts/stack up
stack-down:
	scripts/stack down
stack-status:
	scripts/stack status
stack-reset:
	scripts/stack reset

schemas-check: install
	scripts/schemas check

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
