# Set-up on a fresh machine is `make demo` or `make test`; both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch/torchvision are named exactly so pip takes the builds these machines carry on disk; the project itself
# only asks for a range (see pyproject.toml).
TORCH ?= torch==2.14.1 torchvision==0.29.1

.PHONY: setup demo test lint bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

demo: setup
	$(BIN)/python -m pairforge.demo

test: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -n 2 -q
	$(BIN)/python benchmarks/gpu_check.py --tiny

lint: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: setup
	$(BIN)/python benchmarks/prep_speed.py

clean:
	rm -rf $(VENV) demo-out
