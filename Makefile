# watchbuy developer entry points. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= $(if $(shell command -v python3.11 2>/dev/null),python3.11,python3)
VENV := .venv
VENV_PY := $(VENV)/bin/python
WATCHBUY := $(VENV)/bin/watchbuy
STAMP := $(VENV)/.installed
EXTRAS ?= cpu,export,dev,eval,load

export WATCHBUY_MODEL_DIR ?= var/models
export WATCHBUY_INDEX_ROOT ?= var/indexes
export WATCHBUY_MODEL_MIRROR ?= $(if $(wildcard ../shared/models),../shared/models,)
export WATCHBUY_CATALOGUE_ROOT ?= ../shared/data/viton-dev/streams
comma := ,
# What `make models` calibrates the int8 copies on (training/quantize.py): the *-train sets, when present.
QUANTIZATION_SETS := $(wildcard ../shared/data/viton-train ../shared/data/grocery-train)
export WATCHBUY_QUANTIZATION_DATA ?= [$(subst $(eval) ,$(comma),$(foreach d,$(QUANTIZATION_SETS),"$(d)"))]

STREAM ?= viton-dev-00
CATALOGUE ?=
SOURCE ?=
REALTIME ?=
PYTEST_ARGS ?= -q
DATASET ?= ../shared/data/viton-dev
EPOCHS ?= 8
SEED ?= 0
STREAMS ?=
CLIPS ?=
MODE ?= inprocess
URL ?= http://$${WATCHBUY_HOST:-127.0.0.1}:$${WATCHBUY_PORT:-8000}
OUT ?=
BENCH ?=
BENCH_SECONDS ?=
CONCURRENCY ?=
FAISS_MAX ?=
DURATION ?= 60s
USERS ?= 20
SPAWN_RATE ?= 5
LOADTEST_STREAMS ?= viton-dev-00,viton-dev-01,viton-dev-02

# An empty WATCHBUY_MODEL_MIRROR would fail settings validation (Path("")): drop it from the environment.
ifeq ($(strip $(WATCHBUY_MODEL_MIRROR)),)
unexport WATCHBUY_MODEL_MIRROR
endif

.PHONY: help setup models build-index serve watch demo eval eval-suite train test lint clean bench loadtest engines gpu-check compose-check

help: ## list the targets
	@echo "usage: make <target> [STREAM=$(STREAM)] [CATALOGUE=dir] [PYTEST_ARGS='-q']"
	@echo "       make eval [DATASET=$(DATASET)] [STREAMS=a,b] [CLIPS=n] [MODE=inprocess|http] [URL=...] [OUT=dir]"
	@echo "       make bench [BENCH='build pipeline http savings faiss'] [BENCH_SECONDS=15] [CONCURRENCY=1,4,16,64] [FAISS_MAX=1e6] [BENCH_QUICK=1]"
	@echo "       make loadtest [DURATION=$(DURATION)] [USERS=$(USERS)] [SPAWN_RATE=$(SPAWN_RATE)] [URL=... (default: start a server)]"
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "} {printf "  %-12s %s\n", $$1, $$2}'

setup: $(STAMP) ## create .venv and install the package (editable, extras EXTRAS=cpu,export,dev,eval,load)

$(STAMP): pyproject.toml
	@test -x $(VENV_PY) || $(PYTHON) -m venv $(VENV)
	$(VENV_PY) -m pip install --quiet --upgrade pip
	$(VENV_PY) -m pip install --quiet -e '.[$(EXTRAS)]'
	@touch $@

models: setup ## fetch the detector and export the embedder into WATCHBUY_MODEL_DIR
	$(WATCHBUY) models

build-index: models ## build STREAM's index (from CATALOGUE, default WATCHBUY_CATALOGUE_ROOT/STREAM)
	$(WATCHBUY) build-index --stream $(STREAM) $(if $(CATALOGUE),--catalogue $(CATALOGUE))

serve: models ## run the API (WATCHBUY_HOST / WATCHBUY_PORT, default 127.0.0.1:8000)
	$(WATCHBUY) serve

# stdout carries only the segment lines: the set-up steps write to stderr
watch: ## follow SOURCE (a file or an HLS/RTMP/RTSP URL) with STREAM's index; one JSON line per segment (REALTIME=1 paces a file)
	@test -n "$(SOURCE)" || { echo "usage: make watch STREAM=ID SOURCE=FILE_OR_URL [REALTIME=1]" >&2; exit 2; }
	@$(MAKE) --no-print-directory models >&2
	@$(WATCHBUY) watch $(STREAM) "$(SOURCE)" $(if $(REALTIME),--realtime)

demo: models ## build STREAM's index, start the server, identify clips, print a table
	$(VENV_PY) scripts/demo.py --stream $(STREAM) $(if $(CATALOGUE),--catalogue $(CATALOGUE))

eval: models ## evaluate DATASET (STREAMS, CLIPS per stream, MODE=inprocess|http, URL, OUT); report in var/eval/
	$(WATCHBUY) eval $(DATASET) $(if $(STREAMS),--streams $(STREAMS)) $(if $(CLIPS),--clips $(CLIPS)) \
		--mode $(MODE) $(if $(filter http,$(MODE)),--url "$(URL)") $(if $(OUT),--out $(OUT))

eval-suite: models ## every dev set (in and out of domain) for the configured embedder and ImageNet → var/eval/suite/ (CLIPS per stream)
	$(WATCHBUY) eval-suite $(if $(CLIPS),--clips $(CLIPS))

train: setup ## fine-tune the embedder on the *-train sets (the watchbuy-lite1-v6 recipe) into var/train-v6 (resumable); adopt with `watchbuy adopt var/train-v6`
	$(WATCHBUY) train --epochs $(EPOCHS) --seed $(SEED) --repeat grocery-train=2 \
		--val-share grocery-train-00=0.15 --rotate 25 --hard-group 8 \
		--margin 0.15 --sigmoid-weight 1 --backbone lite1 --freeze-blocks 11 \
		--name watchbuy-lite1-v6 --work-dir var/train-v6

test: models ## run the test suite (PYTEST_ARGS, default -q)
	$(VENV_PY) -m pytest $(PYTEST_ARGS)

lint: setup ## ruff (pyflakes, bugbear, pyupgrade, imports) and mypy (strict on the run-time packages); settings in pyproject.toml
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

bench: models ## benchmarks (pipeline, HTTP, CPU savings, FAISS, index build) → var/bench/<name>/report.{json,md} + plot.png
	$(VENV_PY) -m benchmarks $(BENCH) $(if $(BENCH_SECONDS),--seconds $(BENCH_SECONDS)) \
		$(if $(CONCURRENCY),--concurrency $(CONCURRENCY)) $(if $(FAISS_MAX),--faiss-max $(FAISS_MAX))

loadtest: models ## locust, headless, DURATION/USERS/SPAWN_RATE, against URL or a server it starts → var/loadtest/
	$(VENV_PY) loadtests/run.py --duration $(DURATION) --users $(USERS) --spawn-rate $(SPAWN_RATE) \
		--streams $(LOADTEST_STREAMS) $(if $(filter command line environment,$(origin URL)),--url "$(URL)")

engines: models ## build the TensorRT FP16 engines (GPU + pip install '.[gpu]'), cached in WATCHBUY_MODEL_DIR/engines
	$(VENV_PY) scripts/build_engines.py

gpu-check: models ## on a GPU machine: TensorRT end to end on real frames vs ONNX Runtime CPU (outputs, latency)
	$(VENV_PY) scripts/gpu_check.py

compose-check: ## validate the deployment files: docker-compose config, promtool, k8s manifests, dashboard
	docker-compose -f docker-compose.yml config -q
	docker-compose -f docker-compose.yml -f deploy/compose.gpu.yml config -q
	cd deploy/prometheus && promtool check config prometheus.yml && promtool test rules alerts_test.yml
	$(VENV_PY) -m pytest -q tests/integration/deploy/test_deploy.py

clean: ## remove var/ and build junk (keeps .venv)
	rm -rf var build dist test-output .pytest_cache .ruff_cache *.egg-info
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -print0 | xargs -0 rm -rf
