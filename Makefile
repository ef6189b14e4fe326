# The two commands of a fresh machine: `make demo` and `make test`. Each sets up what it needs.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
LINTED := src tests benchmarks runner examples scripts build_scripts pipelines setup_mlflow_local.py \
	generate_sample_data.py

.PHONY: venv workshop-venvs test lint demo bench bench-peers clean lock

venv:
	@bash scripts/venv.sh dev

# The workshop (pipelines/workshop, notebooks) needs Prefect and Dagster, which pin fastapi and
# SQLAlchemy below what the runner's dev tools use, and Airflow needs its own: two more cached venvs.
workshop-venvs:
	@bash scripts/venv.sh workshop .venv-workshop
	@bash scripts/venv.sh airflow .venv-airflow

# The pinned versions every venv installs (locks/) and the hashed locks images install (runtime, build API); rerun after
# changing dependencies in pyproject.toml.
lock: venv
	@for extra in dev workshop airflow; do \
	  $(VENV)/bin/uv pip compile --native-tls -q pyproject.toml --universal --python-version 3.11 \
	    --extra $$extra -o locks/$$extra.txt; done
	$(VENV)/bin/uv pip compile --native-tls -q pyproject.toml --universal --python-version 3.11 \
	  --extra dev --extra bench -o locks/bench.txt
	@# The images: the Dagster one first, so the Prefect one shares its versions (one dependency layer).
	@for extra in stack-dagster kfp-image; do \
	  $(VENV)/bin/uv pip compile --native-tls -q pyproject.toml --universal --python-version 3.11 \
	    --extra $$extra -o locks/$$extra.txt; done
	$(VENV)/bin/uv pip compile --native-tls -q pyproject.toml --universal --python-version 3.11 \
	  --extra stack -c locks/stack-dagster.txt -o locks/stack.txt
	$(VENV)/bin/uv pip compile --native-tls -q pyproject.toml --universal --python-version 3.11 \
	  --extra quix -o locks/quix.txt
	$(VENV)/bin/uv pip compile --native-tls -q pyproject.toml --universal --python-version 3.11 \
	  --generate-hashes -o src/mlprep/build/docker/runtime.lock
	$(VENV)/bin/uv pip compile --native-tls -q pyproject.toml --universal --python-version 3.11 \
	  --extra build --generate-hashes -o src/mlprep/build/docker/build-api.lock

lint: venv
	$(VENV)/bin/ruff check $(LINTED)

test: lint workshop-venvs
	bash scripts/test.sh

demo: venv
	$(PY) scripts/demo.py

bench: venv
	bash scripts/bench.sh

# mlprep serve against the floor (bare Starlette) and other servers, each in its own virtualenv.
# Quick run: PEERS_ROUNDS=2 PEERS_DURATION=3s make bench-peers
bench-peers: venv
	bash scripts/bench.sh peers

clean:
	rm -rf .venv .venv-workshop .venv-airflow .venv-bench .demo .pytest_cache .ruff_cache .airflow_home .dagster_home
