# One toolchain, one entry point. The README and .ci/run call these targets as they are.
#   make demo   - install Custos (and the Debian tools its main job runs), then run the main
#                 job on the embedded default and serve it on PORT (make demo PORT=8010)
#   make test   - install everything the tests need (Debian and Python packages), then run
#                 lint, format check, types, the import-layer contract, the documentation
#                 site's strict build and the whole suite
#   make docs   - regenerate the settings and command-line references in docs/reference/
#                 from the code, then build the documentation site into site/
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DATA ?= custos-data
SAMPLE := samples/sample-holding
PORT ?= 8000
# Debian packages the tests use: a real PostgreSQL server for the catalog suite; openssl (the
# local timestamp authority, and independent verification); BouncyCastle and a JDK to check
# RFC 4998 evidence records with an implementation that is not ours; Redis for the job queue
# shared by workers; Chromium, driven by Playwright (never a browser of its own), for the
# reading-room tests. The format migration pathways' tools (policies/formats.toml) and their
# validators: Ghostscript, LibreOffice (headless), ImageMagick, FLAC, FFmpeg (ffprobe),
# poppler-utils (pdfinfo), dcraw (raw camera files). age: the tests decrypt stored protected
# copies with Debian's age, an implementation that is not the one Custos encrypts with.
DEBIAN_PACKAGES := postgresql openssl xxd age libbcpkix-java openjdk-17-jdk-headless redis-server \
	chromium ghostscript libreoffice-writer-nogui libreoffice-calc-nogui \
	libreoffice-impress-nogui imagemagick flac ffmpeg poppler-utils dcraw
# Debian packages the demo's main job runs: openssl (the local timestamp authority that seals
# the manifests) and poppler-utils (pdftotext, the text of the sample's public PDF).
DEMO_PACKAGES := openssl poppler-utils

# Install those of the Debian packages $(1) that are not installed (apt-get update first;
# through sudo unless root). dpkg-query's status, not dpkg -s, which also succeeds for a
# package removed with its configuration files left.
apt_install = missing=""; for p in $(1); do \
	  dpkg-query -W -f='$${db:Status-Status}\n' $$p 2>/dev/null | grep -qx installed \
	    || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

.PHONY: install demo demo-deps system-deps test lint typecheck docs docs-check pytest lock bench clean

$(BIN)/.installed: pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements.lock -e '.[dev]'
	touch $@

install: $(BIN)/.installed

demo: demo-deps install
	$(BIN)/custos --data-dir $(DATA) ingest $(SAMPLE) --depositor "Sample Closing Mechanism" --new-depositor
	$(BIN)/custos --data-dir $(DATA) list
	$(BIN)/custos --data-dir $(DATA) show "$$($(BIN)/custos --data-dir $(DATA) list --json | $(BIN)/python -c 'import json,sys; print(json.load(sys.stdin)["packages"][0]["package_id"])')"
	@echo "serving the API and the reading room on http://127.0.0.1:$(PORT)/search (Ctrl-C stops; another port: make demo PORT=N)"
	$(BIN)/custos --data-dir $(DATA) serve --port $(PORT)

demo-deps:
	@$(call apt_install,$(DEMO_PACKAGES))

system-deps:
	@$(call apt_install,$(DEBIAN_PACKAGES))

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: install
	$(BIN)/mypy

# The documentation site (mkdocs.yml, docs/): --strict fails on a broken link or anchor, and
# nothing is fetched from the network. NO_MKDOCS_2_WARNING quiets Material's notice about
# MkDocs 2.0.
MKDOCS := NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs

docs: install
	$(BIN)/python docs/gen.py
	$(MKDOCS) build --strict --quiet

docs-check: install
	$(MKDOCS) build --strict --quiet

pytest: install system-deps
	$(BIN)/pytest -q -n auto

test: system-deps install lint typecheck docs-check pytest

# Regenerate the lock file from a fresh resolution (commit the result).
lock:
	rm -rf /tmp/custos-lock && $(PYTHON) -m venv /tmp/custos-lock
	/tmp/custos-lock/bin/pip install --quiet -e '.[dev]'
	/tmp/custos-lock/bin/pip freeze --exclude-editable | grep -v '^-e' > requirements.lock

bench: install
	$(BIN)/python bench/ingest_large.py
	$(BIN)/python bench/ingest_small.py
	$(BIN)/python bench/seal.py
	$(BIN)/python bench/fileseal.py
	$(BIN)/python bench/migrate.py
	$(BIN)/python bench/pades.py
	$(BIN)/python bench/fixity.py
	$(BIN)/python bench/search.py
	$(BIN)/python bench/sunset.py
	$(BIN)/python bench/identify.py
	$(BIN)/python bench/cli_start.py
	$(BIN)/python bench/scale_custody.py
	$(BIN)/python bench/encrypt.py
	$(BIN)/python bench/sealed_ingest.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache site
