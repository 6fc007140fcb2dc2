# The two commands a newcomer needs: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BOOTSTRAP := $(VENV)/.bootstrapped

.PHONY: install lock demo test test-fast fuzz lint typecheck unit bench openapi clean jar attack-report

# Dependencies come only from the hash-pinned locks in requirements/ (see README,
# "Dependencies"): pip installs exactly what a lock names, at its version and hash, and
# builds (the project, and the locked packages that ship only sources) run on the tools
# pinned in build.lock instead of fetching their own.
PIP_LOCKED := $(BIN)/python -m pip install --quiet --require-hashes --no-deps --no-build-isolation

# The venv with the pinned pip and uv (requirements/bootstrap.lock).
$(BOOTSTRAP): requirements/bootstrap.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes --no-deps -r requirements/bootstrap.lock
	touch $(BOOTSTRAP)

$(STAMP): $(BOOTSTRAP) requirements/build.lock requirements/dev.lock pyproject.toml
	$(PIP_LOCKED) -r requirements/build.lock
	$(PIP_LOCKED) -r requirements/dev.lock
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/python -m pip check
	touch $(STAMP)

# Re-resolve the locks from pyproject.toml and requirements/*.in for CPython 3.11 on
# x86_64 Linux, keeping every pin that still fits. One resolution: dev.lock (runtime, dev
# and build requirements), then runtime.lock (what the image installs) and build.lock
# constrained to it. To move pins: make lock LOCK_FLAGS=--upgrade (or --upgrade-package X).
LOCK_FLAGS ?=
UV_COMPILE := $(BIN)/uv pip compile --quiet --generate-hashes --python-version 3.11 \
	--python-platform x86_64-manylinux_2_28 --custom-compile-command 'make lock'

lock: $(BOOTSTRAP)
	$(UV_COMPILE) requirements/bootstrap.in -o requirements/bootstrap.lock
	$(UV_COMPILE) $(LOCK_FLAGS) pyproject.toml requirements/build.in --extra dev \
		-o requirements/dev.lock
	$(UV_COMPILE) pyproject.toml -c requirements/dev.lock -o requirements/runtime.lock
	$(UV_COMPILE) requirements/build.in -c requirements/dev.lock -o requirements/build.lock

AZURITE := node_modules/.bin/azurite-blob

$(AZURITE): package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $(AZURITE)

# The confidential Parquet jar of Spark's native path (java/jobruntime-kms: KmsClient over
# the key agent, crypto factory, commit protocol), compiled with javac against pyspark's
# jars into build/ (never committed); the image's builder stage runs the same script.
JAR := build/jobruntime-kms.jar
JAVA_SOURCES := $(shell find java/jobruntime-kms -type f)
SPARK_JARS = $$($(BIN)/python -c 'import pathlib, pyspark; print(pathlib.Path(pyspark.__file__).parent / "jars")')

$(JAR): $(STAMP) $(JAVA_SOURCES)
	bash java/jobruntime-kms/build.sh "$(SPARK_JARS)" $(JAR)

jar: $(JAR)

install: $(STAMP)

demo: $(STAMP) $(JAR)
	$(BIN)/python scripts/demo.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

# The whole suite with a coverage report of the packages (in-process code only: the
# pods' processes the tests start are not measured) and its floor (pyproject.toml).
unit: $(STAMP) $(AZURITE) $(JAR)
	$(BIN)/pytest -q --durations=40 --cov --cov-report=term:skip-covered

# The same minus the tests marked slow (real Spark runs, clusters, pods): a minute or two.
test-fast: lint typecheck $(STAMP) $(AZURITE) $(JAR)
	$(BIN)/pytest -q -m "not slow"

# The property-based tests with many more examples per parser (docs/fuzzing.md).
fuzz: $(STAMP)
	HYPOTHESIS_PROFILE=fuzz $(BIN)/pytest -q tests/fuzz

test: lint typecheck unit

# Every attack and fault tried, as a table: threat, adversary, mechanism, test, result
# (tests/adversarial; the same table, without results, is docs/attack-matrix.md).
attack-report: $(STAMP) $(AZURITE) $(JAR)
	$(BIN)/python scripts/attack_report.py --write-docs

bench: $(STAMP)
	$(BIN)/python benchmarks/verifier_latency.py

openapi: $(STAMP)
	$(BIN)/jobruntime emulator openapi > docs/openapi.json

clean:
	rm -rf $(VENV) node_modules .demo .state .pytest_cache .mypy_cache .ruff_cache
