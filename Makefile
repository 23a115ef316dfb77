# Two commands set everything up and run: `make demo` and `make test`.
# Both create .venv when it is missing; torch==2.13.0 goes in first so that no
# looser requirement pulls a multi-GB CUDA build.
# TORCH_INDEX: a package index for that torch install only, e.g. PyTorch's CPU wheels
# (make venv TORCH_INDEX=https://download.pytorch.org/whl/cpu); unset, pip's own indexes
# and find-links decide (PyPI's Linux torch is the CUDA build).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_INDEX ?=
TORCH_PIP := torch==2.13.0 $(if $(strip $(TORCH_INDEX)),--index-url $(strip $(TORCH_INDEX)))
RECIPE ?= models/movie-sentiment.toml
PROFILE ?= quick

.PHONY: demo test test-fast venv clean

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check $(TORCH_PIP)
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[compress,dev]'
	touch $@

venv: $(BIN)/.installed

demo: venv
	$(BIN)/edgedistill build $(RECIPE) --profile $(PROFILE)

test: venv
	$(BIN)/python -m pytest -q

test-fast: venv
	$(BIN)/python -m pytest -q -m "not real and not slow"

clean:
	rm -rf $(VENV) .pytest_cache
