# The two commands of the README:
#   make sweep   - prepare .venv and run the sweep on the default data (N_TRIALS=50)
#   make test    - prepare .venv and run the test suite (what CI runs)
# Also: make bench (bench/run.py, 13-45 min on 2 cores), make ui (the MLflow UI on port 5000).
PYTHON ?= python3.11
VENV := .venv
BIN := $(abspath $(VENV))/bin
N_TRIALS ?= 50
# Extra `mlflow run` arguments, e.g. ARGS='-P families=xgboost,random_forest -P data=my.csv -P target=y'
ARGS ?=
PYTEST_ARGS ?=

.PHONY: sweep test bench ui venv clean

venv: $(VENV)/.installed

# One virtualenv for the sweep, the tests and the benchmark (runtime pins + test + bench).
$(VENV)/.installed: requirements.txt requirements-dev.txt requirements-bench.txt constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-bench.txt -c constraints.txt
	touch $@

# `--env-manager local` runs the `python` found on PATH: the project's virtualenv comes first.
sweep: venv
	PATH="$(BIN):$$PATH" mlflow run . -e sweep --env-manager local -P n_trials=$(N_TRIALS) $(ARGS)

test: venv
	PATH="$(BIN):$$PATH" $(BIN)/python -m pytest $(PYTEST_ARGS)

bench: venv
	PATH="$(BIN):$$PATH" $(BIN)/python bench/run.py $(BENCH_ARGS)

ui: venv
	$(BIN)/mlflow ui --backend-store-uri sqlite:///mlflow.db --port 5000

clean:
	rm -rf $(VENV) .pytest_cache test-output
