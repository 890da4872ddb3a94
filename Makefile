# One entry point for every job: `make test`, `make up`, `make down`, `make bench`.
# Everything is created from nothing: the virtualenv, the Pulumi toolchain (cached outside the
# clone, see scripts/toolchain.sh) and the local state backend.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BACKEND_VENV := .venv-backend
STACK ?= dev

.PHONY: help venv test lint typecheck pytest render drift lint-seed toolchain up down preview pulumi run-backend logs bench clean

help:
	@echo "make test    - ruff, import contracts, mypy --strict, pytest (creates .venv from nothing)"
	@echo "make up      - deploy the dev stack locally through the real Pulumi engine"
	@echo "make down    - destroy the local dev deployment"
	@echo "make logs    - show the local deployment's process logs"
	@echo "make bench   - run the benchmarks and write docs/PERFORMANCE.md"
	@echo "make render STACK=production - print a stack's fly.toml"

$(VENV)/.stamp: requirements.txt requirements-dev.txt backend/requirements.txt policy/requirements.txt bench/requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

venv: $(VENV)/.stamp

# The bench runs the backend on its own dependencies only, as its image does (bench/servers.py).
$(BACKEND_VENV)/.stamp: backend/requirements.txt
	$(PYTHON) -m venv $(BACKEND_VENV)
	$(BACKEND_VENV)/bin/python -m pip install --quiet -r backend/requirements.txt
	touch $@

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	PYTHONPATH=backend $(VENV)/bin/lint-imports --no-cache

typecheck: venv
	$(VENV)/bin/mypy infra backend/realtime policy bench

pytest: venv toolchain
	$(PY) -m pytest $(PYTEST_ARGS)

test: lint typecheck pytest

render: venv
	$(PY) -m infra render --stack $(STACK)

# Shared settings that diverge between staging and production (exit 1): a pending backport.
drift: venv
	$(PY) -m infra drift

# The incident's two configurations: the broken one must fail lint (exit 1), the fix must pass.
lint-seed: venv
	@$(PY) -m infra lint tests/infra/data/seed_before.toml; test $$? -eq 1
	$(PY) -m infra lint tests/infra/data/seed_after.toml

# The Pulumi engine, language host and tools, built from the Go module proxy and cached under
# ~/.cache/realtime-fly (minutes the first time, instant afterwards).
toolchain:
	@bash scripts/toolchain.sh ensure >/dev/null

# The dev stack on this machine through the real engine (docs/LOCAL.md). Other stacks: STACK=...
# with PULUMI_CONFIG_PASSPHRASE set; any pulumi command: make pulumi ARGS="preview --diff".
up: venv
	$(PY) -m infra.engine up --stack $(STACK)

down: venv
	$(PY) -m infra.engine destroy --stack $(STACK)

preview: venv
	$(PY) -m infra.engine preview --stack $(STACK)

pulumi: venv
	$(PY) -m infra.engine pulumi --stack $(STACK) -- $(ARGS)

# The backend alone on 8080/8081 with dev tokens: open http://localhost:8080/ in two tabs.
run-backend: venv
	cd backend && DEV_TOKENS=1 ALLOWED_ORIGINS=http://localhost:8080 LOG_FORMAT=text ../$(PY) -m realtime

logs: venv
	$(PY) -m infra.local.supervise logs

# The benchmark suite (docs/PERFORMANCE.md): the backend against the websockets baseline and
# Centrifugo (built from the Go module proxy on first use). BENCH_QUICK=1 for a ~3 minute run.
bench: venv $(BACKEND_VENV)/.stamp
	$(PY) -m bench

clean:
	rm -rf $(VENV) $(BACKEND_VENV) build .mypy_cache .ruff_cache .pytest_cache
