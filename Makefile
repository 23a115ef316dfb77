# Two commands set everything up and run: `make demo` and `make test`.
# Both create .venv when it is missing; torch==2.13.0 goes in first so that no
# looser requirement pulls a multi-GB CUDA build.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
RECIPE ?= models/movie-sentiment.toml
PROFILE ?= quick

.PHONY: demo test test-fast venv clean

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check torch==2.13.0
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
