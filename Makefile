# Two entry points: `make demo` runs the whole workflow offline on the tiny model;
# `make test` runs the test suite. Each creates .venv with pip when it is missing.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test check soak bench install clean ui docs

# -qq: pip prints errors only (-q still shows setuptools' "Editable installation" warning box)
$(BIN)/pipeline: pyproject.toml
	@echo "installing pipeline and its dependencies into $(VENV) (the first time takes a few minutes)"
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	@$(BIN)/pip install -qq --upgrade pip
	@$(BIN)/pip install -qq -e '.[test]'
	@touch $(BIN)/pipeline

install: $(BIN)/pipeline

demo: install
	@$(BIN)/pipeline run configs/smoke.yaml

# the browser app on the tiny model: http://127.0.0.1:7860 (needs the ui extra, which the test extra includes)
ui: install
	$(BIN)/pipeline ui --model tiny-random

# pytest-xdist: a worker per core (at most 4), each test module whole on one worker (tests/conftest.py)
WORKERS ?= $(shell n=$$(nproc 2>/dev/null || echo 2); [ $$n -gt 4 ] && n=4; echo $$n)
XDIST := -n $(WORKERS)

test: install
	$(BIN)/python -m pytest -q $(XDIST)

# the quick loop: every test that needs no browser, app server, Ray or child process (tests/conftest.py sorts them)
# and no 10 s of model compute (marked slow)
check: install
	$(BIN)/python -m pytest -q $(XDIST) -m "not process and not slow"

# the manual as a site (docs/, mkdocs.yml): `make docs` checks it builds with no broken link or anchor
docs: install
	$(BIN)/pip install -qq -e '.[docs]'
	$(BIN)/mkdocs build --strict

# the fault and fuzz tests at full count: >= 20 kill -9 at random moments, 10x the fuzz cases
soak: install
	PIPELINE_SOAK=1 $(BIN)/python -m pytest -q -s tests/test_faults.py tests/test_fuzz.py tests/test_hostile_input.py

bench: install
	$(BIN)/python benchmarks/explore_speed.py

clean:
	rm -rf outputs .pytest_cache
