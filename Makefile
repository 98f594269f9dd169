# raytrade: the two commands a newcomer needs are `make demo` and `make test`.
# Both create .venv if missing and install what they need into it.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.raytrade-installed
# torch: on CPU-only machines like our CI a local CPU build of 2.13.0 is preinstalled into
# pip's reach, so pin it first; on a GPU cluster `pip install -e .` takes the normal CUDA build.
TORCH_SPEC ?= torch==2.13.0

.PHONY: install test lint demo bench clean browser

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip 'setuptools>=75' wheel
	$(PY) -m pip install -q '$(TORCH_SPEC)'
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# the dashboard's browser test drives Debian's Chromium through its ChromeDriver
browser:
	@test -x /usr/bin/chromium -a -x /usr/bin/chromedriver || { \
	  SUDO=$$(test "$$(id -u)" = 0 || echo sudo); \
	  $$SUDO apt-get install -y -q chromium chromium-driver || \
	  { $$SUDO apt-get update -q && $$SUDO apt-get install -y -q chromium chromium-driver; }; }

# two workers: much of the suite waits on real servers, processes and replays paced in
# wall time, so two share two cores well (about 13 minutes instead of 20 on 2 cores)
test: $(STAMP) browser
	$(PY) -m pytest -n 2

lint: $(STAMP)
	$(VENV)/bin/ruff check envs algos actors dashboard scripts tests
	mkdir -p build/typecheck/raytrade
	ln -sfn ../../../envs build/typecheck/raytrade/envs
	ln -sfn ../../../scripts build/typecheck/raytrade/scripts
	ln -sfn ../../../algos build/typecheck/raytrade/algos
	ln -sfn ../../../actors build/typecheck/raytrade/actors
	ln -sfn ../../../dashboard build/typecheck/raytrade/dashboard
	$(VENV)/bin/mypy

# e.g. make demo DEMO_ARGS="--duration 900 --train-budget 120"
DEMO_ARGS ?=
demo: $(STAMP)
	$(VENV)/bin/raytrade demo $(DEMO_ARGS)

bench: $(STAMP)
	$(PY) -m pip install -q -e '.[test,bench]'
	$(PY) scripts/bench_features.py
	$(PY) scripts/bench_envs.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
