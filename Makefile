# Two entry points (README): `make demo` and `make test`. Both create .venv when missing.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast lint install clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	# torch is pinned first so pip takes the local CPU build here; on a GPU machine
	# install a CUDA build of torch yourself before `make install` (see README).
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/fasr demo --out demo-out --force

lint: $(STAMP)
	$(BIN)/ruff check .

# Two workers with one thread each: the tests use tiny tensors, and two spinning OpenMP threads per process
# on a 2-core machine slow them down many times over. `make test` runs every test (CI: .ci/run), `make test-fast`
# leaves out the ones marked slow.
PYTEST := OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -n 2 --durations=15

test: lint
	$(PYTEST) tests

test-fast: lint
	$(PYTEST) -m "not slow" tests

clean:
	rm -rf $(VENV) demo-out
