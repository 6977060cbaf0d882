# Two entry points (README): `make demo` and `make test`. Both create .venv when missing.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test install clean

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

test: $(STAMP)
	$(BIN)/python -m pytest -q -x --durations=15 tests

clean:
	rm -rf $(VENV) demo-out
