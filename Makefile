# tfgov-ci: the two commands of the README are `make demo` (the main job) and `make test` (what CI
# runs, .ci/run). Each, like `make lint`, first makes sure the set-up is done: scripts/setup.sh (apt,
# npm, pip; as root) runs when the stamp .venv/.setup-done is missing or older than pyproject.toml or
# scripts/setup.sh, and is skipped in a moment otherwise. `make setup` runs it again regardless.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.setup-done

.PHONY: setup demo test lint bench tools-image tools-image-lock clean

setup: ## install tfgov-ci and everything its tests use, checking each part again (Debian; root)
	scripts/setup.sh
	touch $(STAMP)

# The set-up the other targets need; the script skips what is installed already.
$(STAMP): pyproject.toml scripts/setup.sh
	scripts/setup.sh
	touch $@

# One command, nothing after it: demo.py exits with `tfgov-ci run`'s code, which make's failure line
# shows ("Error 3"); make itself then exits 2, GNU make's status for any failed recipe.
demo: $(STAMP) ## run the pipeline on examples/tf-mnist from a throwaway clone
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python scripts/demo.py

test: $(STAMP) ## lint, type-check, then every test tier
	$(BIN)/ruff check tfgov_ci tests bench scripts
	$(BIN)/ruff format --check tfgov_ci tests bench scripts
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/tfgov-ci emit --check
	$(BIN)/pytest

lint: $(STAMP) ## lint, type-check and the import contracts (pyproject.toml) only
	$(BIN)/ruff check tfgov_ci tests bench scripts
	$(BIN)/ruff format --check tfgov_ci tests bench scripts
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: $(STAMP) ## benchmarks, each beside its competitor, printed as tables (build: several minutes)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python bench/startup.py
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python bench/build.py
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python bench/lock.py
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python bench/sbom.py
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python bench/osv.py
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python bench/policy.py
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python bench/sign.py
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python bench/ci_overhead.py
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python bench/inventory.py
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python bench/fleet.py

# The CI tools image (tools-image/, README "The tools image"): into an OCI layout, or, with
# TOOLS_REGISTRY=host[:port], through its governed pipeline into that registry.
tools-image: $(STAMP) ## build the CI tools image (TOOLS_REGISTRY=host[:port]: govern and publish it there)
	PATH="$(CURDIR)/$(BIN):$$PATH" TOOLS_REGISTRY="$(TOOLS_REGISTRY)" scripts/tools_image.sh

# tfgov-ci's dependencies for the tools image's Python (3.11, glibc 2.36), hashed: after a change
# to pyproject.toml's dependencies; commit the result.
tools-image-lock: $(STAMP) ## re-lock the tools image's Python packages from pyproject.toml
	cd tools-image && $(CURDIR)/$(BIN)/uv pip compile ../pyproject.toml --generate-hashes --quiet \
	  --python-version 3.11 --python-platform x86_64-manylinux_2_36 --only-binary :all: -o requirements.lock

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
