# The two commands of the README. Both create .venv on first use and install the pinned
# dependencies (again whenever pyproject.toml changes); nothing else needs to be set up.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The project's Jupyter settings, installed into the venv, where every JupyterLab it runs reads them:
# jupyter/jupyter_server_config.json (no news feed, no update check, encrypted kernel sockets) and
# jupyter/overrides.json (JupyterLab's defaults: no "Jupyter news?" pop-up).
JUPYTER_CONF := $(VENV)/etc/jupyter/jupyter_server_config.json
LAB_OVERRIDES := $(VENV)/share/jupyter/lab/settings/overrides.json
# The working copy `make lab` opens (git-ignored): working through it never changes notebooks/.
LAB := lab

.PHONY: report test test-browser install students lab clean

install: $(STAMP) $(JUPYTER_CONF) $(LAB_OVERRIDES)

$(JUPYTER_CONF): jupyter/jupyter_server_config.json $(STAMP)
	mkdir -p $(dir $@)
	cp jupyter/jupyter_server_config.json $@

$(LAB_OVERRIDES): jupyter/overrides.json $(STAMP)
	mkdir -p $(dir $@)
	cp jupyter/overrides.json $@

$(STAMP): pyproject.toml requirements-nodeps.txt
	@command -v $(PYTHON) >/dev/null || { echo "labkit needs Python 3.11 ($(PYTHON) not found; set PYTHON=...)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -r requirements-nodeps.txt
	touch $(STAMP)

# Every notebook as a report: reports/<name>.ipynb and reports/<name>.html (replaced on request).
report: install
	$(BIN)/labkit run all --force

# Unit and property tests, nbval on the committed notebooks, papermill runs with other parameters.
test: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadscope tests notebooks --ignore=tests/test_browser.py --nbval \
	  --nbval-sanitize-with tests/nbval_sanitize.cfg -p no:cacheprovider

# JupyterLab in a browser, in the browser test: installs Chromium (apt) where it is missing,
# then drives it with Playwright (dev extras). About 1.5 minutes on 2 cores; not part of `make test`.
test-browser: install
	$(BIN)/python -m pytest tests/test_browser.py -p no:cacheprovider -v

# Student notebooks: every solution region replaced by a stub, its outputs cleared.
students: $(STAMP)
	$(BIN)/labkit students --out build/students

# JupyterLab on lab/, a working copy of the notebooks: the student notebooks (made on first use),
# or with `make lab FROM=solutions` a copy of the solved ones. An existing lab/ is kept as it is
# (your work); delete it to start again. notebooks/ is never opened, so it stays as committed.
lab: install
	@if [ ! -d $(LAB) ]; then \
	  if [ "$(FROM)" = solutions ]; then mkdir -p $(LAB) && cp notebooks/[0-9]*.ipynb $(LAB)/; \
	  else $(BIN)/labkit students --out $(LAB); fi; \
	  echo "made $(LAB)/ ($(or $(FROM),students)); notebooks/ stays untouched"; fi
	$(BIN)/jupyter lab --notebook-dir=$(LAB) $(if $(filter 0,$(shell id -u)),--allow-root)

clean:
	rm -rf reports build .pytest_cache   # lab/ holds your work: delete it yourself
