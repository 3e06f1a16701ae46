# Developer entry points. Everything bootstraps itself from nothing: `make test` on a fresh clone
# creates .venv, installs the project, fetches Kafka from Maven Central and runs the whole suite.
# The interpreter .venv is made from: Debian's python3.11 where the machine has it with its venv
# module and headers (python3.11-venv, python3.11-dev: the aiokafka and mypyc builds compile
# against them). A static build with profile-guided optimisation and LTO: about 18 % less CPU per
# event than a shared, unoptimised build such as pyenv's default (docs/performance.md). Else
# `python3`; `make install PYTHON=...` picks another; an existing .venv keeps its own (`make clean`).
PYTHON ?= $(shell /usr/bin/python3.11 -c 'import ensurepip, venv' >/dev/null 2>&1 && test -f /usr/include/python3.11/Python.h && echo /usr/bin/python3.11 || echo python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test unit integration reliability security mutation lint typecheck bench profile compile clean-compiled kafka-start kafka-stop clickhouse-server observability-check clean

$(STAMP): pyproject.toml tools/kafka_crc.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	# aiokafka from source with Kafka's CRC-32C by the crc32 instruction (x86-64; else, with
	# PIP_ONLY_BINARY, or if the build fails or is not confirmed, the wheel stays): tools/kafka_crc.py
	$(BIN)/python -m tools.kafka_crc build
	touch $(STAMP)

install: $(STAMP)

## the main job: local Kafka + worker + simulator, alerts printed as they fire
demo: install
	$(BIN)/partnerwatch demo

## the whole suite, as CI runs it (.ci/run): lint, types, then every test but those marked `slow`:
## unit, detectors, integration (real Kafka, chDB, ClickHouse server), security, and the fault
## injection and long fuzz runs of tests/reliability. Three pytest processes (tools/split_tests.py):
## the broker's tests in one, the rest beside it, then the broker's modules not yet run shared with
## a second one (tools/module_claims.py); PYTEST_PROCS=1 runs everything in one process
PYTEST_PROCS ?= 2
test: install lint typecheck
	bash infra/kafka/kafka.sh start
	if [ "$(PYTEST_PROCS)" = 1 ]; then $(BIN)/python -m pytest -q; else $(BIN)/python -m tools.split_tests; fi

## the quick loop while editing: no broker, no worker (unit and detector tests, about a minute)
unit: install
	$(BIN)/python -m pytest -q tests/unit tests/detectors

integration: install
	bash infra/kafka/kafka.sh start
	$(BIN)/python -m pytest -q tests/integration

## faults under load and long fuzz (tests/reliability, everything in it, marked or not); see docs/operations.md
reliability: install
	bash infra/kafka/kafka.sh start
	$(BIN)/python -m pytest -q -s -m '' tests/reliability

## the regression tests of the security findings (tests/security), all of them, `slow` ones too
security: install
	bash infra/kafka/kafka.sh start
	$(BIN)/python -m pytest -q -m '' tests/security

## moves each detector threshold (DetectionConfig) one step, and flips its comparisons, one at a
## time, and runs the detector tests against each mutant: fails when a mutant survives
mutation: install
	$(BIN)/python -m tests.mutation.threshold_mutation

lint: install
	$(BIN)/ruff format --check partnerwatch pipeline streams sources detectors sinks tests bench tools
	$(BIN)/ruff check partnerwatch pipeline streams sources detectors sinks tests bench tools
	$(BIN)/lint-imports

typecheck: install
	$(BIN)/mypy

## throughput, latency, scaling and warehouse figures, written to bench/results/<date>.json and .md,
## then the SP-API gateway's added latency and the notification ingestion rate (<date>-gateway,
## <date>-notifications); BENCH_ARGS="--count 200000" for a shorter run than the default 1,000,000
## events, BENCH_ARGS="--only gateway --only notifications" for those two stages alone
bench: install
	bash infra/kafka/kafka.sh start
	$(BIN)/python -m bench.run $(BENCH_ARGS)

## where one worker's time goes (py-spy): bench/results/profile-<date>.md
profile: install
	bash infra/kafka/kafka.sh start
	$(BIN)/python -m bench.profile $(PROFILE_ARGS)

## optional: compile the detection path and the ingest path (validation, masking, sequencing)
## with mypyc (mypy's compiler, a dev dependency; needs a C compiler), in place beside the
## sources; every process started from the checkout then runs it
## (docs/performance.md "Compiled detectors"). `make clean-compiled` goes back to pure Python.
compile: install
	$(BIN)/python -m tools.compile_detectors build

clean-compiled:
	$(BIN)/python -m tools.compile_detectors clean

kafka-start:
	bash infra/kafka/kafka.sh start

kafka-stop:
	bash infra/kafka/kafka.sh stop

clickhouse-server:
	bash infra/clickhouse/server.sh start

## Prometheus config, alert rules and their unit tests (Debian's prometheus package: promtool)
observability-check:
	cd infra/prometheus && promtool check config prometheus.yml
	cd infra/prometheus && promtool check rules rules/partnerwatch.rules.yml
	cd infra/prometheus && promtool test rules rules/partnerwatch.rules.test.yml

clean:
	bash infra/kafka/kafka.sh stop || true
	test ! -x $(BIN)/python || $(BIN)/python -m tools.compile_detectors clean
	rm -rf $(VENV) .cache data .mypy_cache .pytest_cache .ruff_cache
