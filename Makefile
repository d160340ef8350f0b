# geninf: the two commands a user needs are `make demo` and `make test`.
# TORCH_SPEC picks the torch build; the default is the CPU wheel this project is developed on.
# A GPU user may run e.g. `make test TORCH_SPEC='torch==2.13.0'` against a CUDA index.
PYTHON      ?= python3
VENV        ?= .venv
TORCH_SPEC  ?= torch==2.13.0
EXTRAS      ?= test,data
PY          := $(VENV)/bin/python
STAMP       := $(VENV)/.geninf-installed

.PHONY: install test demo lint clean bench

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): $(PY) pyproject.toml
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[$(EXTRAS)]"
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(PY) -m pytest -q tests

demo: $(STAMP)
	$(VENV)/bin/geninf demo --force

lint: $(STAMP)
	$(PY) -m pip install --quiet ruff
	$(VENV)/bin/ruff check src tests

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache

# the benchmark suite (about 40 minutes on 2 cores, plus 30-60 for the robustness suite); JSON and summary.json under benchmarks/results
bench: $(STAMP)
	$(PY) benchmarks/run_all.py
