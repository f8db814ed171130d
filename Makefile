# tfgov-ci: the two commands of the README are `make setup` and `make demo` / `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: setup demo test lint bench clean

setup: ## install tfgov-ci and everything its tests use (Debian; run as root or with sudo)
	scripts/setup.sh

demo: ## run the pipeline on examples/tf-mnist from a throwaway clone
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python scripts/demo.py

test: ## lint, type-check, then every test tier
	$(BIN)/ruff check tfgov_ci tests bench scripts
	$(BIN)/ruff format --check tfgov_ci tests bench scripts
	$(BIN)/mypy
	$(BIN)/tfgov-ci emit --check
	$(BIN)/pytest

lint:
	$(BIN)/ruff check tfgov_ci tests bench scripts
	$(BIN)/ruff format --check tfgov_ci tests bench scripts
	$(BIN)/mypy

bench: ## benchmarks, each beside its competitor, printed as tables (build: several minutes)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python bench/startup.py
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python bench/build.py
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python bench/lock.py
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python bench/sbom.py
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python bench/osv.py
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python bench/policy.py
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python bench/ci_overhead.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
