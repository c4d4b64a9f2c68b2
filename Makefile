# Two entry points, each doing its own set-up on a fresh machine:
#   make run    every notebook on the embedded default (mini preset), writing figures/ and the executed notebooks
#   make test   unit tests plus every notebook under nbval with the smoke preset
#   make validate  strict nbval of the committed mini notebooks (after make run on the same machine)
#   make lab       JupyterLab on 127.0.0.1 with this venv's kernel; open the URL with the token it prints
#   make lab-test  every notebook (smoke preset) run through JupyterLab's UI in headless Chromium, then checked
#                  in the rendered page (tests/browser/test_lab.py); screenshots and report.md in build/lab/
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch first, pinned: an open range would pull a multi-GB CUDA build (see README)
TORCH_SPEC ?= torch==2.13.0
NOTEBOOKS := $(sort $(wildcard notebooks/[0-9]*.ipynb))
RUN_TARGETS := $(patsubst notebooks/%.ipynb,run-%,$(NOTEBOOKS))
# make run: notebooks side by side where the cores hold more than one of their runs (mini pins 2 threads a run), at
# most 3 (02, 03 and 04 are independent); one after another on 2 cores. RUN_JOBS=N overrides.
MINI_THREADS := 2
RUN_JOBS ?= $(shell n=$$(( $$(nproc 2>/dev/null || echo 1) / $(MINI_THREADS) )); echo $$(( n < 1 ? 1 : n > 3 ? 3 : n )))
NBVAL_DIR := build/nbval
LAB_DIR := build/lab
# The lab targets put this checkout first on the kernel's path (whatever the venv's editable install points at)
# and give JupyterLab a python3 kernel spec that names this venv's interpreter by its absolute path.
LAB_ENV = HF_HUB_OFFLINE=1 PYTHONPATH="$(CURDIR)$${PYTHONPATH:+:$$PYTHONPATH}"
ROOT_FLAG := $(shell [ "$$(id -u)" = 0 ] && echo --allow-root)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup run test validate test-gpu lab lab-browser lab-test clean $(RUN_TARGETS)

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[test]"
	touch $@

run: setup
	$(MAKE) --no-print-directory -j$(RUN_JOBS) $(filter run-05_%,$(RUN_TARGETS))

# notebook 01's part 4 reuses the tiny TOFU models notebook 02 trains; notebook 05, last, reads the runs of 02-04 and
# computes only the missing ones. Progress goes to this log as plain lines, each led by its notebook's name.
$(filter run-01_%,$(RUN_TARGETS)): $(filter run-02_%,$(RUN_TARGETS))
$(filter run-05_%,$(RUN_TARGETS)): $(filter-out run-05_%,$(RUN_TARGETS))
$(RUN_TARGETS): run-%: setup
	@echo "== $*.ipynb"
	cd notebooks && HF_HUB_OFFLINE=1 SGA_PROGRESS=lines SGA_PROGRESS_LABEL=$* ../$(PY) -m papermill $*.ipynb $*.ipynb \
		-k python3 --log-level WARNING --no-progress-bar

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

lab: setup
	$(PY) -m ipykernel install --prefix build/jupyter --name python3 --display-name "Python 3 (ipykernel)" >/dev/null 2>&1
	@echo "== JupyterLab on 127.0.0.1, kernel $(abspath $(PY)); open the http://127.0.0.1:PORT/lab?token=... URL printed below (Ctrl-C stops it)"
	$(LAB_ENV) JUPYTER_PATH="$(CURDIR)/build/jupyter/share/jupyter" $(PY) -m jupyter lab --ip=127.0.0.1 --no-browser \
		--ServerApp.open_browser=False --ServerApp.root_dir="$(CURDIR)" $(ROOT_FLAG)

# Debian's chromium and chromium-driver (their versions match), installed only where either is missing
lab-browser:
	@if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then \
		echo "== $$(chromium --version 2>/dev/null), $$(chromedriver --version | cut -d' ' -f1-2)"; \
	else \
		$(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q chromium chromium-driver; \
	fi

lab-test: setup lab-browser
	rm -rf $(LAB_DIR)
	$(LAB_ENV) SGA_LAB_TEST=1 $(PY) -m pytest tests/browser -m browser -v -p no:cacheprovider; \
		status=$$?; cat $(LAB_DIR)/report.md 2>/dev/null; echo "== screenshots: $(LAB_DIR)/*.png"; exit $$status

clean:
	rm -rf build runs .cache
