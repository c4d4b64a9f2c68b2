# Two entry points, each doing its own set-up on a fresh machine:
#   make run    every notebook on the embedded default (mini preset), writing figures/ and the executed notebooks
#   make test   unit tests plus every notebook under nbval with the smoke preset
#   make validate  strict nbval of the committed mini notebooks (after make run on the same machine)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch first, pinned: an open range would pull a multi-GB CUDA build (see README)
TORCH_SPEC ?= torch==2.13.0
NOTEBOOKS := $(sort $(wildcard notebooks/[0-9]*.ipynb))
# notebook 02 first: it trains and caches the TOFU models that notebook 01's part 4 reuses
RUN_ORDER := $(filter notebooks/02_%,$(NOTEBOOKS)) $(filter-out notebooks/02_%,$(NOTEBOOKS))
NBVAL_DIR := build/nbval

.PHONY: setup run test validate test-gpu clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[test]"
	touch $@

run: setup
	cd notebooks && for nb in $(notdir $(RUN_ORDER)); do \
		echo "== $$nb"; HF_HUB_OFFLINE=1 ../$(PY) -m papermill $$nb $$nb -k python3 --log-level WARNING || exit 1; \
	done

test: setup
	rm -rf $(NBVAL_DIR) && mkdir -p $(NBVAL_DIR)
	for nb in $(NOTEBOOKS); do \
		$(PY) -m papermill --prepare-only $$nb $(NBVAL_DIR)/$$(basename $$nb) -p preset smoke -k python3 --log-level WARNING || exit 1; \
	done
	HF_HUB_OFFLINE=1 $(PY) -m pytest tests $(NBVAL_DIR) --nbval-lax --nbval-current-env -p no:cacheprovider

validate: setup
	HF_HUB_OFFLINE=1 $(PY) -m pytest --nbval $(NOTEBOOKS) --nbval-current-env --nbval-sanitize-with notebooks/nbval_sanitize.cfg -p no:cacheprovider

test-gpu: setup
	HF_HUB_OFFLINE=1 $(PY) -m pytest tests -m gpu

clean:
	rm -rf build runs .cache
