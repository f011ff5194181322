# Everything a fresh machine needs is installed by these targets; see README.md.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
UV_VERSION := 0.13.9
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat requirements.lock pyproject.toml | sha256sum | cut -c1-16)

.PHONY: setup run test lock definition synth clean

$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"
	$(BIN)/uv pip install --quiet --python $(BIN)/python -r requirements.lock
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	rm -f $(VENV)/.installed-*
	touch $@

setup: $(STAMP)

## The main job on the local default: the whole lifecycle, with automatic rollback.
run: $(STAMP)
	$(BIN)/mlops demo

test: $(STAMP)
	$(BIN)/python -m pytest

## Regenerate the SageMaker pipeline definition that infra/ deploys.
definition: $(STAMP)
	$(BIN)/mlops pipeline definition --out pipelines/definition.json --assets pipelines/build/artifact-bucket

## Synthesize the CDK app offline (issue [D], in progress: cdk-nag findings are not all
## acknowledged yet, so this target still fails at the nag step).
STAGE ?= dev
synth: definition
	npm ci --no-audit --no-fund
	PATH=$(abspath $(BIN)):$$PATH JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION=20 CDK_DISABLE_VERSION_CHECK=1 CDK_DISABLE_CLI_TELEMETRY=true npx cdk synth -c stage=$(STAGE) --quiet
	$(BIN)/cfn-lint

lock:
	$(BIN)/uv pip compile pyproject.toml --extra dev --python-version 3.11 -o requirements.lock

clean:
	rm -rf $(VENV) .mlops
