# Two commands for a fresh clone: `make run` (set up, then run the pipeline) and `make test`.
VENV := .venv
PY := $(VENV)/bin/python
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: setup run test test-slow clean

setup: $(VENV)/.installed .dvc/tmp/plots_page.html

# Re-install only when the dependencies change. -qq: errors only (setuptools boxes a notice about editable
# installs that asks nothing of a user).
$(VENV)/.installed: pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install -qq -c constraints.txt -e '.[test]'
	touch $@

# The page dvc plots writes its charts into, with Vega inline (.dvc/config points there): charts offline too.
.dvc/tmp/plots_page.html: $(VENV)/.installed thesislab/plots_page.py
	$(PY) -m thesislab.plots_page

# The pipeline, with the train matrix run at once (python -m thesislab.sweep; `dvc repro` gives the same results,
# one run after another).
run: setup
	$(PY) -m thesislab.sweep

test: setup
	$(PY) -m pytest -q

# The sweep on real engines (a one-node SLURM cluster, a two-node Ray cluster), under faults, the committed tiny
# run on emulated CPUs (qemu-user), and the longest end-to-end runs; CI runs it after `make test`. Starting SLURM
# and installing qemu-user need root (apt installs them when missing); without them those tests say why they skip.
# --no-loadscope-reorder: the files go to the workers in collection order, which starts the tests marked `first`
# (the guides, many minutes) before all others; xdist's default order (most tests a file first) would start them last.
test-slow: setup
	$(PY) -m pip install -qq -c constraints.txt -e '.[test,ray]'
	bash .ci/slurm.sh start || echo "SLURM could not start here: its tests will be skipped, saying why"
	command -v qemu-x86_64 >/dev/null || (apt-get install -y -qq qemu-user || (apt-get update -qq && \
		apt-get install -y -qq qemu-user)) >/dev/null 2>&1 || echo "qemu-user could not be installed here: the \
		emulated-CPU tests will be skipped, saying why"
	command -v chromium >/dev/null || apt-get install -y -qq chromium >/dev/null 2>&1 || echo "chromium could not \
		be installed here: the offline-plots test will be skipped, saying why"
	$(PY) -m pytest -q -n 2 --no-loadscope-reorder -m "slow or engines" $(PYTEST_ARGS); status=$$?; \
		bash .ci/slurm.sh stop; exit $$status

clean:
	rm -rf data/cache dvc_plots
