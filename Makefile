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
# The benchmarks' optimum peer (suite.py, ladder.py) needs transformers 4.57, which the toolchain has left:
# it gets its own environment, made by `make peers`.
PEERS_VENV ?= .venv-peers
# The ladder benchmark's model2vec peer (benchmarks/ladder.py) needs transformers < 5.4 and huggingface_hub >= 1.0:
# a third environment, also made by `make peers`.
M2V_VENV ?= .venv-model2vec
# The serve benchmark's stock Open Inference Protocol client (benchmarks/serve.py --tritonclient-python): tritonclient
# pulls in gevent, which nothing else needs; a fourth environment, also made by `make peers`.
TRITON_VENV ?= .venv-tritonclient
RECIPE ?= models/movie-sentiment.toml
PROFILE ?= quick

.PHONY: demo test test-fast venv peers clean

# [ray]: tests/runtime/test_ray_job.py runs a local Ray cluster (a 79 MB wheel, 240 MB installed, seconds from a warm
# pip cache).
$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check $(TORCH_PIP)
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[compress,serve,ray,dev]'
	touch $@

venv: $(BIN)/.installed

$(PEERS_VENV)/.installed: benchmarks/peers/requirements.txt
	test -x $(PEERS_VENV)/bin/python || $(PYTHON) -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/python -m pip install -q --disable-pip-version-check $(TORCH_PIP)
	$(PEERS_VENV)/bin/python -m pip install -q --disable-pip-version-check -r benchmarks/peers/requirements.txt
	touch $@

$(M2V_VENV)/.installed: benchmarks/peers/model2vec-requirements.txt
	test -x $(M2V_VENV)/bin/python || $(PYTHON) -m venv $(M2V_VENV)
	$(M2V_VENV)/bin/python -m pip install -q --disable-pip-version-check $(TORCH_PIP)
	$(M2V_VENV)/bin/python -m pip install -q --disable-pip-version-check -r benchmarks/peers/model2vec-requirements.txt
	touch $@

$(TRITON_VENV)/.installed: benchmarks/peers/tritonclient-requirements.txt
	test -x $(TRITON_VENV)/bin/python || $(PYTHON) -m venv $(TRITON_VENV)
	$(TRITON_VENV)/bin/python -m pip install -q --disable-pip-version-check -r benchmarks/peers/tritonclient-requirements.txt
	touch $@

peers: $(PEERS_VENV)/.installed $(M2V_VENV)/.installed $(TRITON_VENV)/.installed

demo: venv
	$(BIN)/edgedistill build $(RECIPE) --profile $(PROFILE)

# The linter first ([tool.ruff] in pyproject.toml): seconds, and a failure stops before the long suite.
test: venv
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

test-fast: venv
	$(BIN)/python -m pytest -q -m "not real and not slow"

clean:
	rm -rf $(VENV) $(PEERS_VENV) $(M2V_VENV) $(TRITON_VENV) .pytest_cache .ruff_cache
