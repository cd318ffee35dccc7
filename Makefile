# Two entry points: `make demo` runs the whole workflow offline on the tiny model;
# `make test` runs the test suite. Each creates .venv with pip when it is missing.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test test-ray soak bench install clean ui

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

test: install
	$(BIN)/python -m pytest -q

# the Ray pool's tests (they skip without Ray, which the test extra leaves out: a local Ray costs seconds per module)
test-ray: install
	@$(BIN)/pip install -qq -e '.[test,ray]'
	$(BIN)/python -m pytest -q tests/test_ray.py tests/test_ray_pool.py tests/test_ray_app.py tests/test_ray_import.py

# the fault and fuzz tests at full count: >= 20 kill -9 at random moments, 10x the fuzz cases
soak: install
	PIPELINE_SOAK=1 $(BIN)/python -m pytest -q -s tests/test_faults.py tests/test_fuzz.py tests/test_hostile_input.py

bench: install
	$(BIN)/python benchmarks/explore_speed.py

clean:
	rm -rf outputs .pytest_cache
