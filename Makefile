# Zero to GANs: every target sets up .venv first if it is missing or older than pyproject.toml.
#   make train-all [DATA_DIR=../shared/datasets] [PROFILE=cpu]   train every lesson
#   make test                                                     the whole test suite
# `make help` lists the rest.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DATA_DIR ?= $(or $(ZTG_DATA_DIR),data)
OUT_DIR ?= checkpoints
PROFILE ?= cpu
LESSON ?=
ARGS ?=
SPACE ?= digits
HF_SPACE ?=
HF_REPO ?=
HF_ORG ?=
WEIGHTS_ORG ?=
PRIVATE ?=
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help setup train train-all push test lint bench bench-speedrun browser space spaces space-digits space-cifar10 space-faces deploy-space publish clean

help:
	@echo "make train-all [DATA_DIR=..] [PROFILE=smoke|cpu|course]  train every lesson into $(OUT_DIR)/"
	@echo "make train LESSON=mnist-cnn [ARGS='--epochs=5']          train one lesson"
	@echo "make push LESSON=mnist-cnn HF_REPO=org/name [PRIVATE=1]  publish a trained checkpoint (the repo mirrors it)"
	@echo "make test [PYTEST_ARGS='-k resume']                      run the test suite"
	@echo "make lint | make bench [DATA_DIR=..]                     ruff; the benchmarks under bench/ (minutes)"
	@echo "make bench-speedrun [RUNS=curves,seeds,muon,airbench96,hour,ablation,additions] [PRECISION=bf16] [BASE=cpu|sgd-cpu]  CIFAR-10 time to accuracy (hours)"
	@echo "make space SPACE=digits | make spaces                    serve one Space / every Space locally"
	@echo "make deploy-space SPACE=digits HF_SPACE=org/name [WEIGHTS_ORG=org]  upload a Space to the Hub"
	@echo "make publish HF_ORG=org [PRIVATE=1]                      every checkpoint to org/<lesson>, every Space to org/<space>"

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

setup: $(VENV)/.installed

train-all: setup
	$(PY) -m training all --profile $(PROFILE) --data-dir $(DATA_DIR) --out-dir $(OUT_DIR) $(ARGS)

train: setup
	@test -n "$(LESSON)" || (echo "usage: make train LESSON=<name>; lessons: python -m training --help"; exit 2)
	$(PY) -m training $(LESSON) --profile $(PROFILE) --data-dir $(DATA_DIR) --out-dir $(OUT_DIR) $(ARGS)

push: setup
	@test -n "$(LESSON)" -a -n "$(HF_REPO)" || (echo "usage: make push LESSON=<name> HF_REPO=org/name [PRIVATE=1]"; exit 2)
	$(PY) -m training.hub $(OUT_DIR)/$(LESSON) $(HF_REPO) $(if $(PRIVATE),--private)

# Debian's Chromium for the browser tests (Playwright's own browser download cannot work offline).
browser:
	@if [ -x /usr/bin/chromium ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
		|| echo "could not install chromium: browser tests will be skipped"; \
	else echo "no /usr/bin/chromium (install Debian's chromium): browser tests will be skipped"; fi

test: setup browser
	$(PY) -m pytest $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check .

# The speedrun bench trains for an hour or more (bench-speedrun); the others take minutes.
bench: setup
	$(PY) bench/bench_mnist_training.py --data-dir $(DATA_DIR)
	$(PY) bench/bench_micro_batch.py
	@for script in $(filter-out bench/bench_mnist_training.py bench/bench_micro_batch.py bench/bench_cifar_speedrun.py,$(wildcard bench/bench_*.py)); do \
		echo "== $$script"; $(PY) $$script --data-dir $(DATA_DIR) || exit 1; done

bench-speedrun: setup
	$(PY) bench/bench_cifar_speedrun.py --data-dir $(DATA_DIR) --runs $(or $(RUNS),curves,seeds,ablation) $(if $(PRECISION),--mixed-precision $(PRECISION)) $(if $(BASE),--base $(BASE))

space: setup
	$(PY) spaces/$(SPACE)/app.py

space-digits space-cifar10 space-faces: space-%: setup
	$(PY) spaces/$*/app.py

spaces: setup
	$(PY) spaces/deploy.py serve-all

deploy-space: setup
	@test -n "$(HF_SPACE)" || (echo "usage: make deploy-space SPACE=digits HF_SPACE=org/name [WEIGHTS_ORG=org]"; exit 2)
	$(PY) spaces/deploy.py upload $(SPACE) $(HF_SPACE) $(if $(WEIGHTS_ORG),--weights-org $(WEIGHTS_ORG)) $(if $(PRIVATE),--private)

# From trained checkpoints to live demos on your own account, in one command.
publish: setup
	@test -n "$(HF_ORG)" || (echo "usage: make publish HF_ORG=your-org [PRIVATE=1]"; exit 2)
	$(PY) spaces/deploy.py publish $(HF_ORG) --checkpoints $(OUT_DIR) $(if $(PRIVATE),--private)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache artifacts
