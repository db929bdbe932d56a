# Tasks for contributors (see CONTRIBUTING.md). CI (.ci/run) runs install, lint, test, slow, docs.
PYTHON ?= python

.PHONY: install lint format test slow docs smoke bench-quick all

install:  ## torch's CPU wheel first (a plain `torch` can pull a multi-GB CUDA build), then the package
	$(PYTHON) -m pip install torch==2.13.0
	$(PYTHON) -m pip install -e ".[test,docs]"

lint:
	ruff check .
	ruff format --check .

format:
	ruff check --fix .
	ruff format .

test:  ## the default suite (about 6 minutes on 2 cores)
	$(PYTHON) -m pytest

slow:  ## notebooks, the CLI's full runs, determinism across processes (about 7 minutes)
	$(PYTHON) -m pytest -m slow

docs:
	sphinx-build -W -q -b html docs docs/_build/html

smoke:  ## tutorial-style user models through every method (seconds; needs ../shared)
	$(PYTHON) ../shared/hooks/user_models_smoke.py

bench-quick:
	pyro-unlearn bench --suite all --quick

all: lint test slow docs
