# The two commands of the README. Both create .venv on first use and install the pinned
# dependencies (again whenever pyproject.toml changes); nothing else needs to be set up.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: report test install students clean

install: $(STAMP)

$(STAMP): pyproject.toml requirements-nodeps.txt
	@command -v $(PYTHON) >/dev/null || { echo "labkit needs Python 3.11 ($(PYTHON) not found; set PYTHON=...)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -r requirements-nodeps.txt
	touch $(STAMP)

# Every notebook as a report: reports/<name>.ipynb and reports/<name>.html (replaced on request).
report: $(STAMP)
	$(BIN)/labkit run all --force

# Unit and property tests, nbval on the committed notebooks, papermill runs with other parameters.
test: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadscope tests notebooks --nbval \
	  --nbval-sanitize-with tests/nbval_sanitize.cfg -p no:cacheprovider

# Student notebooks: every solution region replaced by a stub, its outputs cleared.
students: $(STAMP)
	$(BIN)/labkit students --out build/students

clean:
	rm -rf reports build .pytest_cache
