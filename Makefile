# phoenix-fleet: one entry point. Every target creates the environment from uv.lock first.
#   make demo     the main job in the local sandbox (see README)
#   make test     every test (lint, types, unit, DAG integrity, e2e incl. real Terraform)
#   make airflow  Airflow standalone on 127.0.0.1:8080, wired to the sandbox
SHELL := /bin/bash
.DEFAULT_GOAL := help

UV_VERSION := 0.13.9
# uv from PATH, else a private copy bootstrapped into .tools/ with the machine's python3
UV := $(shell command -v uv 2>/dev/null || echo $(CURDIR)/.tools/bin/uv)
RUN := $(UV) run --locked
PYTEST_ARGS ?=
# the suite runs in parallel processes, a test module per process at a time (module fixtures such as a real
# Airflow stay in one process); most e2e time is waiting on Airflow, Terraform and timers, not CPU. 3 on 2 cores:
# at 4, a Terraform provider once failed its start-up handshake under the load (the distributed test's apply)
PYTEST_WORKERS ?= 3

export PHOENIX_SANDBOX_DIR ?= $(CURDIR)/.sandbox
export PHOENIX_SANDBOX_PORT ?= 5055
export PHOENIX_FLEET_CONFIG ?= $(CURDIR)/include/fleet.yaml

.PHONY: help setup demo demo-clock test lint system-packages sandbox-start sandbox-stop sandbox-reset airflow clean

help:
	@sed -n '2,5p' Makefile

$(CURDIR)/.tools/bin/uv:
	python3 -m venv $(CURDIR)/.tools
	$(CURDIR)/.tools/bin/pip install --quiet uv==$(UV_VERSION)

.venv/.synced: uv.lock pyproject.toml | $(UV)
	# bytecode at install: with PYTHONDONTWRITEBYTECODE (set on CI machines) every process that imports Airflow
	# and boto3 would compile them from source again (~2.5 CPU-s each; the tests start hundreds)
	$(UV) sync --locked --compile-bytecode
	@touch $@

setup: .venv/.synced

# demo-clock runs before setup, so that the demo can print setup's time too (a fresh clone's uv and venv)
demo-clock:
	@mkdir -p $(PHOENIX_SANDBOX_DIR) && date +%s > $(PHOENIX_SANDBOX_DIR)/demo-start

demo: demo-clock setup
	PHOENIX_DEMO_SETUP_SECONDS=$$(( $$(date +%s) - $$(cat $(PHOENIX_SANDBOX_DIR)/demo-start) )) $(RUN) python -m sandbox.demo

lint: setup
	$(RUN) ruff check .
	$(RUN) mypy

# the Debian packages the tests need (.ci/apt-packages.txt): installed when root, else the command to run is printed
system-packages:
	.ci/install-packages

# PHOENIX_NO_SKIP: a test that lacks a tool fails naming .ci/install-packages instead of skipping
test: system-packages lint
	mkdir -p $(PHOENIX_SANDBOX_DIR)
	PHOENIX_NO_SKIP=1 $(RUN) pytest -n $(PYTEST_WORKERS) --dist loadscope --junitxml=$(PHOENIX_SANDBOX_DIR)/junit.xml $(PYTEST_ARGS)

sandbox-start: setup
	$(RUN) python -m sandbox start

sandbox-stop: setup
	$(RUN) python -m sandbox stop

sandbox-reset: setup
	$(RUN) python -m sandbox reset

airflow: setup
	$(RUN) python -m sandbox.airflow_standalone

clean:
	-$(RUN) python -m sandbox stop
	rm -rf .sandbox .venv .tools
