# Flashsale developer commands. Every target installs what is missing first. `make help` lists them.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST := $(PY) -m pytest -q
SOURCES := services operator tools tests scripts
SCRIPTS := scripts/repeat_tests.py scripts/bench_against.py
export PATH := $(abspath $(VENV))/bin:$(PATH)

.DEFAULT_GOAL := help
.PHONY: help install tools demo up test check lint typecheck unit integration e2e faults operator observability charts-check \
	faults-repeat \
	bench loadtest proto proto-check envtest-up envtest-down cluster-up cluster-down cluster-e2e clean

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z0-9-]+:.*## / {printf "  make %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

install: ## install what is missing (apt packages, .venv with the pinned dependencies); idempotent
	@scripts/bootstrap.sh

demo: install ## run the platform and a demo sale, print a report (reports/demo.json)
	$(PY) -m flashsale_tools.cli demo

up: install ## run Kafka, every service and the gateway on :8080 until Ctrl-C
	$(PY) -m flashsale_tools.cli up

test: install tools lint typecheck proto-check ## everything: lint, types, import contracts, proto drift, every test (the local node's too, as root; TEST_MARKERS="not cluster" leaves it out)
	$(PYTEST) $(if $(TEST_MARKERS),-m "$(TEST_MARKERS)")

tools: install ## build the heavy test tools once, cached by version under ~/.cache/flashsale (kube-apiserver and etcd, Helm and the chart tools, Prometheus and Jaeger, the local node's parts), before any test's timeout runs
	scripts/envtest.sh build
	scripts/charts.sh build
	scripts/observability.sh build
	$(if $(findstring not cluster,$(TEST_MARKERS)),,scripts/cluster.sh build)

check: install lint typecheck unit ## the quick loop: lint, types, import contracts, unit tests

lint: install ## ruff, ruff format and the import contracts (lint-imports)
	$(VENV)/bin/ruff check $(SOURCES)
	$(VENV)/bin/ruff format --check $(SOURCES)
	$(VENV)/bin/lint-imports

typecheck: install ## mypy --strict
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy --strict $(SCRIPTS)

unit: install ## unit tests of the pure logic (seconds)
	$(PYTEST) tests/unit

integration: install ## each adapter and service against real Kafka, PostgreSQL and SQLite
	$(PYTEST) -m integration

e2e: install ## the whole platform as processes (demo, shopper journey, load test)
	$(PYTEST) -m e2e

faults: install ## a worker killed, the broker and PostgreSQL restarted, replays, workers joining and leaving
	$(PYTEST) -m faults

operator: install tools ## the operator against a real kube-apiserver and etcd (built once, cached)
	$(PYTEST) -m operator

observability: install tools ## metrics, dashboards, alerts and traces on real Prometheus, promtool and Jaeger (built once)
	$(PYTEST) -m observability

charts-check: install tools ## the Helm charts: lint, render, Restricted Pod Security, schema refusals (Helm built once)
	$(PYTEST) -m charts

N ?= 20
faults-repeat: install ## the fault tests N times in a row, failures by test (make faults-repeat N=20)
	$(PY) scripts/repeat_tests.py --runs $(N) -- -m faults

loadtest: install ## a spike of shoppers, the checker, reports/loadtest.json and .png
	$(PY) -m flashsale_tools.cli loadtest

bench: install ## the purchase designs side by side on one workload (reports/bench.json)
	scripts/bench.sh

proto: install ## regenerate services/flashsale_api from proto/
	PYTHON=$(PY) scripts/gen_proto.sh

proto-check: proto ## fail when the generated stubs drift from proto/
	@git diff --exit-code --stat -- services/flashsale_api || (echo "generated stubs drifted from proto/: run make proto and commit" >&2; exit 1)
	@test -z "$$(git status --porcelain -- services/flashsale_api)" || (echo "untracked generated stubs: run make proto and commit" >&2; exit 1)

envtest-up: install ## a real kube-apiserver and etcd on loopback (prints the KUBECONFIG)
	scripts/envtest.sh build
	scripts/envtest.sh up

envtest-down: ## stop the envtest control plane
	scripts/envtest.sh down

cluster-up: install ## a real single-node Kubernetes cluster on this machine (root; builds its parts once; prints the KUBECONFIG)
	scripts/cluster.sh up

cluster-down: ## stop the local node and put back what it changed on the host
	scripts/cluster.sh down

cluster-e2e: install tools ## on the local node: its pods, DNS and logs; the image from the Dockerfile, both charts and a FlashSale sold through the gateway (root; builds its parts once)
	scripts/cluster.sh build
	scripts/cluster.sh image
	$(PYTEST) -m cluster

clean: ## remove local data, reports and caches
	scripts/cluster.sh down
	rm -rf var reports .pytest_cache .mypy_cache .import_linter_cache
