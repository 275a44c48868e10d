# genlab: `make demo` sets everything up and runs the main job; `make test` runs the tests.
# Both create the virtual environment on first use. Override TORCH for another build,
# e.g. `make demo TORCH="torch --index-url https://download.pytorch.org/whl/cu124"`.

PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: demo test install run-all bench bench-quick clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip >/dev/null || true
	# torch first, pinned: a loose requirement would pull multi-GB CUDA wheels on a CPU box
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

install: $(VENV)/.installed

demo: install
	$(VENV)/bin/genlab demo

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

run-all: install
	$(VENV)/bin/genlab run-all --preset full

bench: install
	$(VENV)/bin/genlab bench

bench-quick: install
	$(VENV)/bin/genlab bench --quick

clean:
	rm -rf $(VENV) runs .pytest_cache
