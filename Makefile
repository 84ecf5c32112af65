# Flashsale developer commands. `make demo` and `make test` install what is missing first.
VENV ?= .venv
PY := $(VENV)/bin/python
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: install demo up test bench loadtest lint typecheck proto proto-check unit faults-repeat clean envtest-up envtest-down

install:
	@scripts/bootstrap.sh

demo: install
	$(PY) -m flashsale_tools.cli demo

up: install
	$(PY) -m flashsale_tools.cli up

test: install lint typecheck proto-check
	$(PY) -m pytest -q

unit: install
	$(PY) -m pytest -q tests/unit

# the fault tests N times in a row (default 20), failures reported by test: make faults-repeat N=20
N ?= 20
faults-repeat: install
	$(PY) scripts/repeat_tests.py --runs $(N) -- -m faults

loadtest: install
	$(PY) -m flashsale_tools.cli loadtest

bench: install
	scripts/bench.sh

lint: install
	$(VENV)/bin/ruff check services operator tools tests scripts
	$(VENV)/bin/ruff format --check services operator tools tests scripts
	$(VENV)/bin/lint-imports

typecheck: install
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy --strict scripts/repeat_tests.py scripts/bench_against.py

proto: install
	PYTHON=$(PY) scripts/gen_proto.sh

proto-check: proto
	@git diff --exit-code --stat -- services/flashsale_api || (echo "generated stubs drifted from proto/: run make proto and commit" >&2; exit 1)
	@test -z "$$(git status --porcelain -- services/flashsale_api)" || (echo "untracked generated stubs: run make proto and commit" >&2; exit 1)

envtest-up: install
	scripts/envtest.sh build
	scripts/envtest.sh up

envtest-down:
	scripts/envtest.sh down

clean:
	rm -rf var reports .pytest_cache .mypy_cache
