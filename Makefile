# watchbuy developer entry points. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= $(if $(shell command -v python3.11 2>/dev/null),python3.11,python3)
VENV := .venv
VENV_PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
EXTRAS ?= cpu,export,dev,eval,load

export WATCHBUY_MODEL_DIR ?= var/models
export WATCHBUY_INDEX_ROOT ?= var/indexes
export WATCHBUY_MODEL_MIRROR ?= $(if $(wildcard ../shared/models),../shared/models,)
export WATCHBUY_CATALOGUE_ROOT ?= ../shared/data/viton-dev/streams

STREAM ?= viton-dev-00
CATALOGUE ?=
PYTEST_ARGS ?= -q
DATASET ?= ../shared/data/viton-dev
EPOCHS ?= 6
SEED ?= 0
STREAMS ?=
CLIPS ?=
MODE ?= inprocess
URL ?= http://$${WATCHBUY_HOST:-127.0.0.1}:$${WATCHBUY_PORT:-8000}
OUT ?=

# An empty WATCHBUY_MODEL_MIRROR would fail settings validation (Path("")): drop it from the environment.
ifeq ($(strip $(WATCHBUY_MODEL_MIRROR)),)
unexport WATCHBUY_MODEL_MIRROR
endif

.PHONY: help setup models build-index serve demo eval train test clean

help: ## list the targets
	@echo "usage: make <target> [STREAM=$(STREAM)] [CATALOGUE=dir] [PYTEST_ARGS='-q']"
	@echo "       make eval [DATASET=$(DATASET)] [STREAMS=a,b] [CLIPS=n] [MODE=inprocess|http] [URL=...] [OUT=dir]"
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "} {printf "  %-12s %s\n", $$1, $$2}'

setup: $(STAMP) ## create .venv and install the package (editable, extras EXTRAS=cpu,export,dev,eval,load)

$(STAMP): pyproject.toml
	@test -x $(VENV_PY) || $(PYTHON) -m venv $(VENV)
	$(VENV_PY) -m pip install --quiet --upgrade pip
	$(VENV_PY) -m pip install --quiet -e '.[$(EXTRAS)]'
	@touch $@

models: setup ## fetch the detector and export the embedder into WATCHBUY_MODEL_DIR
	$(VENV_PY) -m models fetch

build-index: models ## build STREAM's index (from CATALOGUE, default WATCHBUY_CATALOGUE_ROOT/STREAM)
	$(VENV_PY) -m indexer build --stream $(STREAM) $(if $(CATALOGUE),--catalogue $(CATALOGUE))

serve: models ## run the API (WATCHBUY_HOST / WATCHBUY_PORT, default 127.0.0.1:8000)
	$(VENV)/bin/uvicorn --factory service.app:create_app \
		--host $${WATCHBUY_HOST:-127.0.0.1} --port $${WATCHBUY_PORT:-8000}

demo: models ## build STREAM's index, start the server, identify clips, print a table
	$(VENV_PY) scripts/demo.py --stream $(STREAM) $(if $(CATALOGUE),--catalogue $(CATALOGUE))

eval: models ## evaluate DATASET (STREAMS, CLIPS per stream, MODE=inprocess|http, URL, OUT); report in var/eval/
	$(VENV_PY) -m indexer.eval $(DATASET) $(if $(STREAMS),--streams $(STREAMS)) $(if $(CLIPS),--clips $(CLIPS)) \
		--mode $(MODE) $(if $(filter http,$(MODE)),--url "$(URL)") $(if $(OUT),--out $(OUT))

train: setup ## fine-tune the embedder on the *-train sets (resumable; var/train), save models/weights/, re-export
	$(VENV_PY) -m models.train --epochs $(EPOCHS) --seed $(SEED)
	$(VENV_PY) -m models fetch

test: models ## run the test suite (PYTEST_ARGS, default -q)
	$(VENV_PY) -m pytest $(PYTEST_ARGS)

clean: ## remove var/ and build junk (keeps .venv)
	rm -rf var build dist test-output .pytest_cache .ruff_cache *.egg-info
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -print0 | xargs -0 rm -rf
