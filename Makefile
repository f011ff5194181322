# Everything a fresh machine needs is installed by these targets; see README.md.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
UV_VERSION := 0.13.9
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat requirements.lock pyproject.toml | sha256sum | cut -c1-16)
RUN_STAMP := $(VENV)/.runtime-$(shell cat requirements-runtime.lock pyproject.toml | sha256sum | cut -c1-16)

BENCH_VENV ?= .venv-bench
BENCH_BIN := $(BENCH_VENV)/bin
BENCH_STAMP := $(BENCH_VENV)/.installed-$(shell cat requirements-bench.lock pyproject.toml | sha256sum | cut -c1-16)

.PHONY: setup run test lock definition synth bench-setup bench clean

$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python -r requirements.lock
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	rm -f $(VENV)/.installed-*
	touch $@

## What `make run` needs and no more: the runtime lock (the same pins as the dev lock, without
## pytest, moto, the CDK). `make test` and `make synth` add the rest to the same venv.
$(RUN_STAMP): requirements-runtime.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python -r requirements-runtime.lock
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	rm -f $(VENV)/.runtime-*
	touch $@

setup: $(STAMP)

## The main job on the local default: the whole lifecycle, with automatic rollback.
run: $(RUN_STAMP)
	$(BIN)/mlops demo

test: $(STAMP)
	$(BIN)/python -m pytest

## Regenerate the SageMaker pipeline definition that infra/ deploys.
definition: $(STAMP)
	$(BIN)/mlops pipeline definition --out pipelines/definition.json --assets pipelines/build/artifact-bucket

## Synthesize the CDK app offline: one stage (cdk.out/) and the fleet, every model of models/
## in every environment of cdk.json's promotionOrder (cdk.out.fleet/); cdk-nag (AwsSolutions)
## fails the synth on an unacknowledged finding, and cfn-lint checks every template.
STAGE ?= dev
CDK := PATH=$(abspath $(BIN)):$$PATH JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION=20 CDK_DISABLE_VERSION_CHECK=1 CDK_DISABLE_CLI_TELEMETRY=true npx cdk
synth: definition
	npm ci --no-audit --no-fund
	$(CDK) synth -c stage=$(STAGE) --quiet
	$(BIN)/cfn-lint
	$(CDK) synth -c fleet=true --quiet --output cdk.out.fleet
	$(BIN)/cfn-lint --config-file .cfnlintrc.yaml -- cdk.out.fleet/*.template.json

## The benchmark environment: the kit plus the peers it is measured against (Evidently, NannyML).
## A separate venv, so the peers never enter the one `make run` and `make test` use.
$(BENCH_STAMP): requirements-bench.lock pyproject.toml
	test -x $(BENCH_BIN)/python || $(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_BIN)/python -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"
	$(BENCH_BIN)/uv pip install --quiet --python $(BENCH_BIN)/python -r requirements-bench.lock
	$(BENCH_BIN)/uv pip install --quiet --python $(BENCH_BIN)/python --no-deps -e .
	rm -f $(BENCH_VENV)/.installed-*
	touch $@

bench-setup: $(BENCH_STAMP)

## Every benchmark, figures as JSON in benchmarks/results/ (see benchmarks/README.md).
bench: $(STAMP) $(BENCH_STAMP)
	command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	bash benchmarks/run_all.sh

lock:
	$(BIN)/uv pip compile pyproject.toml --extra dev --python-version 3.11 -o requirements.lock
	$(BIN)/uv pip compile pyproject.toml --python-version 3.11 -c requirements.lock \
		-o requirements-runtime.lock
	$(BIN)/uv pip compile pyproject.toml --extra bench --python-version 3.11 \
		--override benchmarks/overrides.txt -o requirements-bench.lock

clean:
	rm -rf $(VENV) $(BENCH_VENV) .mlops
