# allocscope: `make run` runs the main job, `make test` the whole suite. Both set up first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEB_JEMALLOC := /usr/lib/$(shell gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)/libjemalloc.so.2

.PHONY: setup system-deps fips run info test test-arm64 lint typecheck docs pytest image examples clean

setup: system-deps $(VENV)/.installed

system-deps:
	@scripts/install-system-deps.sh

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

# A real OpenSSL FIPS provider, built once per machine (see scripts/build-fips-provider.sh).
fips: setup
	@scripts/build-fips-provider.sh | tail -n1

info: setup
	LD_PRELOAD=$(DEB_JEMALLOC) MALLOC_CONF=background_thread:true,dirty_decay_ms:500 \
		$(BIN)/allocscope info --human

# The main job: every available allocator variant on the default workloads (2-5 min);
# prints the table, writes results/<timestamp>/{results.json,report.md,chart.png,chart.svg}.
run: setup
	$(BIN)/allocscope compare

LINTED := src tests examples docs/conf.py docs/_ext container/*.py container/base/*.py $(wildcard benchmarks bench_alloc.py)

SHELL_SCRIPTS := $(wildcard scripts/*.sh container/*.sh container/base/*.sh) .ci/run

lint: setup
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)
	shellcheck -x $(SHELL_SCRIPTS)

typecheck: setup
	$(BIN)/mypy

# The documentation site (docs/, Sphinx + MyST), strict: any warning (a broken link, a page
# outside the navigation, a reference part that cannot be generated) fails the build.
docs: setup
	$(BIN)/sphinx-build -W -n --keep-going -q -b html docs docs/_build/html

# The arm64 container tests (marker arm64) run when PLATFORMS names linux/arm64, as in `make test`.
pytest: setup fips
	ALLOCSCOPE_FIPS_DIR="$$(scripts/build-fips-provider.sh | tail -n1)" \
		$(BIN)/pytest $(if $(findstring linux/arm64,$(PLATFORMS)),-m 'arm64 or not arm64')

# The service image allocscope:latest (container/Dockerfile), built offline: Debian-built
# FIPS bases unless Chainguard's are present (ALLOCSCOPE_BASES=auto|debian|chainguard).
# Starts a loopback-only Docker engine if none runs. See container/build-image.sh.
image: setup
	container/build-image.sh

# The example apps' images (examples/*; container/build-image.sh --app), for the container tests.
EXAMPLE_IMAGES := flask-gunicorn:allocscope-example-flask fastapi-uvicorn:allocscope-example-fastapi
examples: image
	@for e in $(EXAMPLE_IMAGES); do \
		ALLOCSCOPE_IMAGE=$${e#*:}:latest container/build-image.sh --app examples/$${e%%:*} || exit 1; \
	done

# images first: the container tests (tests/container) run against them. Both platforms: the
# linux/arm64 images are built and tested under emulation (qemu-user-static, installed when
# missing; see docs/how-to/arm64-image.md). PLATFORMS=linux/amd64 make test skips them.
test: export PLATFORMS ?= linux/amd64,linux/arm64
test: lint typecheck docs image examples pytest

# Only the arm64 images and their container tests.
test-arm64: export PLATFORMS = linux/amd64,linux/arm64
test-arm64: setup fips image examples
	ALLOCSCOPE_FIPS_DIR="$$(scripts/build-fips-provider.sh | tail -n1)" $(BIN)/pytest -m arm64 tests/container/test_image_arm64.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache results container/wheels container/sboms container/oci \
		docs/_build docs/reference/_generated
