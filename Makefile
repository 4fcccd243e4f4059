# The two commands of the README:
#   make demo   set everything up, then run the demo pipeline on the embedded tiny model
#   make test   set everything up if needed, then run the test suite
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.medbase-installed

.PHONY: setup demo test test-learning lint bench peers docs clean

setup: $(STAMP)

# torch is pinned first: torch==2.13.0 is the CPU wheel; an unpinned torch pulls a
# multi-GB CUDA build. The package's own `torch>=...` floor is then already met.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: setup
	$(VENV)/bin/medbase demo

test: setup
	DS_ACCELERATOR=cpu $(VENV)/bin/python -m pytest -q

test-learning: setup
	DS_ACCELERATOR=cpu $(VENV)/bin/python -m pytest -q -s tests/test_pipeline.py

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# docs/config.md from the config classes (tests/report/test_config_docs.py checks it)
docs: setup
	$(VENV)/bin/medbase config docs --out docs/config.md

bench: setup
	for b in benchmarks/*.py; do $(PY) $$b --quick || exit 1; done

# The peers of benchmarks/prepare.py (LLaMA-Factory, Axolotl): their own pins would
# replace this project's torch and transformers, so they come without dependencies.
peers: setup
	$(PY) -m pip install --quiet -e '.[peers]'
	$(PY) -m pip install --quiet --no-deps llamafactory==0.9.5 axolotl==0.19.0

clean:
	rm -rf $(VENV) runs .pytest_cache
