# lakecast: `make demo` runs the whole pipeline on a fresh machine; `make test` passes the tests.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DAYS   ?= 7
ROWS   ?= 100000
STREAM_EVENTS ?= 10000
SEED   ?= 42
START  ?= 2026-01-01
PYTEST_ARGS ?=

AIRFLOW_VENV    := .venv-airflow
AIRFLOW_VERSION ?= 3.3.2

.PHONY: help setup system-deps jars lint format test test-unit test-integration test-e2e demo bench down clean \
	dist deploy-local airflow-test test-spark-cluster notebook

help: ## List the targets with a line each
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}'

system-deps: ## Install Java 17 and Maven from the system's packages where missing
	@if ! command -v java >/dev/null || ! command -v mvn >/dev/null; then \
	  if command -v apt-get >/dev/null; then \
	    echo "installing Java 17 and Maven with apt-get"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jdk-headless maven >/dev/null; \
	  else \
	    echo "lakecast needs a Java 17 JDK and Apache Maven on PATH: install them with your package manager" >&2; exit 1; \
	  fi; \
	fi

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found: install Python 3.11" >&2; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

setup: system-deps $(STAMP) jars ## Install everything into .venv and resolve the JVM jars

jars: system-deps $(STAMP) ## Resolve jvm/pom.xml into .jars (strict checksums, once), verify each jar's sha256
	$(VENV)/bin/lakecast jars

lint: $(STAMP) ## ruff (lint and format check) and mypy
	$(VENV)/bin/ruff check lib jobs streaming tests benchmarks
	$(VENV)/bin/ruff format --check lib jobs streaming tests benchmarks
	$(VENV)/bin/mypy

format: $(STAMP) ## Format the code with ruff
	$(VENV)/bin/ruff format lib jobs streaming tests benchmarks
	$(VENV)/bin/ruff check --fix lib jobs streaming tests benchmarks

test: setup lint ## Install, lint, then run every tier (unit, integration, e2e; Airflow's: make airflow-test)
	$(PY) -m pytest tests -m "not airflow" $(PYTEST_ARGS)

test-unit: $(STAMP) ## Only the fast unit tests
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

test-integration: setup ## Only the integration tests (real Spark, Delta, Kafka)
	$(PY) -m pytest tests/integration $(PYTEST_ARGS)

test-e2e: setup ## Only the end-to-end tests (spark-submit, processes)
	$(PY) -m pytest tests/e2e $(PYTEST_ARGS)

demo: setup ## Install, start the local stack and run the whole pipeline end to end
	$(VENV)/bin/lakecast local up
	@echo "== 1. events: $(ROWS) rows over $(DAYS) days"
	./spark-submit.sh --master "local[2]" jobs/generate_events.py --rows $(ROWS) --days $(DAYS) --seed $(SEED) --start-date $(START)
	@echo "== 2. features (point in time) and the entity snapshot"
	./spark-submit.sh --master "local[2]" jobs/extract_features.py --all
	@echo "== 3. train and register: scikit-learn (champion), Keras (challenger)"
	./spark-submit.sh --master "local[2]" jobs/train.py --seed $(SEED)
	$(VENV)/bin/lakecast models list
	@echo "== 4. batch scoring with purchase@champion"
	./spark-submit.sh --master "local[2]" jobs/score_batch.py --model purchase@champion
	@echo "== 5. streaming: two workers serve a replayed day"
	$(VENV)/bin/lakecast demo stream --workers 2 --limit $(STREAM_EVENTS)
	@echo "== 6. canary against the champion of a retrain of its recipe (the Keras challenger is below the gates' non-inferiority margin)"
	$(PY) deploy/train_candidate.py --seed $(SEED)
	-$(VENV)/bin/lakecast demo canary --model purchase
	@echo "== 7. monitor and autoscaler during a replay with a spike"
	$(VENV)/bin/lakecast demo loop
	@echo "The broker keeps running; 'make down' (or 'lakecast local down') stops it."

bench: setup ## Run the benchmarks (they print figures and ratios)
	$(PY) benchmarks/batch_scoring.py
	$(PY) benchmarks/streaming.py
	$(PY) benchmarks/anomaly_nab.py

dist: $(STAMP) ## Build the wheel, the sdist and the --py-files zip into dist/ (versioned from pyproject)
	rm -rf dist
	$(PY) -m build --no-isolation --sdist --wheel --outdir dist .
	$(PY) deploy/pyfiles_zip.py --out dist
	@ls -l dist

deploy-local: setup ## Deploy stage: train, register, gates and a short canary via lakecast deploy (exit 1: rolled back)
	deploy/local-deploy.sh

test-spark-cluster: setup ## Only the batch pipeline on a 2-worker standalone cluster (also in make test)
	$(PY) -m pytest tests/e2e/test_cluster_pipeline.py $(PYTEST_ARGS)

airflow-test: setup ## Install Apache Airflow into .venv-airflow (once) and run the DAG with it, one date
	@test -x $(AIRFLOW_VENV)/bin/airflow || { \
	  $(PYTHON) -m venv $(AIRFLOW_VENV) && $(AIRFLOW_VENV)/bin/pip install -q --upgrade pip && \
	  $(AIRFLOW_VENV)/bin/pip install -q "apache-airflow==$(AIRFLOW_VERSION)"; }
	$(PY) -m pytest tests/e2e/test_airflow_dag.py -m airflow $(PYTEST_ARGS)

notebook: setup ## Open notebooks/ in JupyterLab (installed into .venv on first use)
	@test -x $(VENV)/bin/jupyter-lab || $(PY) -m pip install -q jupyterlab
	$(VENV)/bin/jupyter lab notebooks/

down: ## Stop the local stack
	$(VENV)/bin/lakecast local down

clean: ## Remove the virtualenv, caches, jars, local state and the lake
	rm -rf $(VENV) $(AIRFLOW_VENV) dist .jars .state lake .pytest_cache .mypy_cache .ruff_cache
