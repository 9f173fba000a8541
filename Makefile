# Two commands for a fresh machine (see README):
#   make bench   set up .venv (core + every plugin + extras) and run the DC2 head-to-head benchmark
#   make test    run the default test suite (sets up .venv first if needed)
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PLUGINS := $(sort $(wildcard plugins/*))
STAMP  := $(VENV)/.pzkit-installed

.PHONY: setup bench bench-sims bench-rail test test-slow microbench clean

$(STAMP): pyproject.toml constraints.txt $(wildcard plugins/*/pyproject.toml)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# -c constraints.txt pins the CPU build of torch (see the comment in that file)
	$(PY) -m pip install --quiet -c constraints.txt -e ".[torch,rail,sims,dev]" $(addprefix -e ,$(PLUGINS))
	touch $@

setup: $(STAMP)

bench: $(STAMP)
	$(VENV)/bin/pzkit bench --dataset dc2 --out reports/dc2

# all seven methods + train_z on one mock survey that carries every input (11–17 min on 2 cores)
bench-sims: $(STAMP)
	$(VENV)/bin/pzkit bench --dataset sims:deep_wide --out reports/sims_deep_wide

test: $(STAMP)
	$(PY) -m pytest -q

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

bench-rail: $(STAMP)
	$(PY) -m pip install --quiet -c constraints.txt -e ".[bench-rail]"
	$(PY) benchmarks/dc2_vs_rail.py --out benchmarks/results/dc2_vs_rail.json

microbench: $(STAMP)
	$(PY) -m pytest benchmarks -q -m "" --benchmark-only --benchmark-autosave

clean:
	rm -rf $(VENV) reports .pytest_cache .benchmarks
