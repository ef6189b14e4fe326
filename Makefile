# The two commands of a fresh machine: `make demo` and `make test`. Each sets up what it needs.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
LINTED := src tests benchmarks runner examples scripts build_scripts pipelines setup_mlflow_local.py \
	generate_sample_data.py

.PHONY: venv test lint demo bench clean

venv:
	@bash scripts/venv.sh dev

lint: venv
	$(VENV)/bin/ruff check $(LINTED)

test: lint
	$(PY) -m pytest -q

demo: venv
	$(PY) scripts/demo.py

bench: venv
	bash scripts/bench.sh

clean:
	rm -rf .venv .demo .pytest_cache .ruff_cache
