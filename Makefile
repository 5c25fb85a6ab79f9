# Two commands for a fresh clone: `make run` (set up, then run the pipeline) and `make test`.
VENV := .venv
PY := $(VENV)/bin/python
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: setup run test clean

setup: $(VENV)/.installed

# Re-install only when the dependencies change.
$(VENV)/.installed: pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $@

run: setup
	dvc repro

test: setup
	$(PY) -m pytest -q

clean:
	rm -rf data/cache dvc_plots
