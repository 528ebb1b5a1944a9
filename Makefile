# Two commands: `make run` (set up, then run everything in one process) and
# `make test` (set up, start real Kafka + Cassandra, run the whole suite, stop them).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
PYTEST_ARGS ?=

.PHONY: setup run test test-fast typecheck infra-up infra-down proto bench bench-pipeline image deploy-check clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	$(BIN)/python -m services.common.protogen
	@rm -f $(VENV)/.installed-*; touch $(STAMP)

setup: $(STAMP)

proto: setup
	$(BIN)/python -m services.common.protogen

run: setup
	$(BIN)/csms run

# mypy --strict over services/ (the configuration is [tool.mypy] in pyproject.toml).
typecheck: setup
	$(BIN)/python -m mypy

# The type check, then the whole suite, real engines included. With CI set, engines that
# fail to start fail the run.
test: setup
	$(BIN)/python -m mypy
	@./deploy/local/infra.sh up; rc=$$?; \
	if [ $$rc -ne 0 ]; then echo "infra failed to start (exit $$rc)"; ./deploy/local/infra.sh down; exit $$rc; fi; \
	CSMS_INFRA=1 $(BIN)/python -m pytest $(PYTEST_ARGS); rc=$$?; \
	./deploy/local/infra.sh down; exit $$rc

# Unit, contract (memory + SQLite) and e2e tests only; no Kafka/Cassandra.
test-fast: setup
	$(BIN)/python -m pytest -m "not infra" $(PYTEST_ARGS)

infra-up:
	./deploy/local/infra.sh up

infra-down:
	./deploy/local/infra.sh down

bench: setup
	$(BIN)/python bench/run_all.py

# Distributed mode on real Kafka + Cassandra, end to end and per component (bench/pipeline.py).
# Starts an engine only if its port is not already served, and stops only what it started.
# Options: make bench-pipeline PIPELINE_ARGS="--stations 500 --rate 2 --duration 60"
PIPELINE_ARGS ?=
bench-pipeline: setup
	@started=""; \
	for e in kafka:9092 cassandra:9042; do \
	  $(BIN)/python -c "import socket,sys; socket.create_connection(('127.0.0.1', $${e#*:}), 2).close()" 2>/dev/null \
	    || started="$$started $${e%%:*}"; \
	done; \
	for e in $$started; do \
	  ./deploy/local/infra.sh up $$e || { rc=$$?; for s in $$started; do ./deploy/local/infra.sh down $$s; done; exit $$rc; }; \
	done; \
	trap 'true' INT TERM; \
	$(BIN)/python bench/pipeline.py $(PIPELINE_ARGS); rc=$$?; \
	for e in $$started; do ./deploy/local/infra.sh down $$e; done; \
	exit $$rc

# The container image (Dockerfile): hadolint, then a build with buildah/podman/docker where one
# works on this machine and can pull the base image; otherwise it says why it did not build.
# Options: IMAGE=csms:tag PYTHON_IMAGE=mirror/python:3.11-slim IMAGE_BUILD=require|lint
image:
	./deploy/check/image.sh

# Chart lint and render, kubeconform for Kubernetes 1.29-1.31, promtool rules and tests, the
# dashboard's queries, the image lint/build and buf lint/breaking (deploy/check/run.sh), with
# pinned tools installed into .tools/ on first use.
deploy-check:
	./deploy/check/run.sh

clean:
	rm -rf $(VENV) services/common/gen .pytest_cache csms.db* .csms
