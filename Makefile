# Two commands for a fresh machine: `make run` (server on the demo PBX)
# and `make test` (the whole suite). Both create or reuse .venv by themselves.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# setuptools' "Editable installation" notice (a folder named like a package,
# here twisted/, may shadow it) warns of what the .pth line below does on
# purpose; filtering it keeps the install quiet.
QUIET  := PYTHONWARNINGS="ignore:Editable installation"

.PHONY: run test bench clean venv

venv: $(STAMP)

# The editable install maps our packages through an import hook, which
# Twisted's plugin scan (a directory listing of twisted/plugins on sys.path)
# cannot see; the asttapi-checkout.pth line puts the checkout on the venv's
# path so `.venv/bin/twistd -n asttapi` finds twisted/plugins/asttapi_plugin.py
# from any directory. (A non-editable `pip install .` installs the dropin.)
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(QUIET) $(BIN)/python -m pip install --quiet -e '.[test]'
	@$(BIN)/python -c "import os, site; open(os.path.join(site.getsitepackages()[0], 'asttapi-checkout.pth'), 'w').write(os.getcwd() + '\\n')"
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/twistd -n asttapi $(ARGS)

# One pytest worker per core (pytest-xdist); PYTEST_WORKERS=0 runs in one process.
PYTEST_WORKERS ?= auto

test: $(STAMP)
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) build *.egg-info twisted/plugins/dropin.cache
