# Two commands a new user needs: `make run` (install + open the demo) and `make test` (install + all tests).
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
# Without an NVIDIA GPU keep torch at the CPU build (see constraints/cpu.txt); with one, pip's normal torch.
CONSTRAINTS := $(shell command -v nvidia-smi >/dev/null 2>&1 || echo "-c constraints/cpu.txt")

.PHONY: install run test lint bench clean-venv icons package package-test

PLUGINS := plugins/slicer_seg plugins/sam2_engine

$(VENV)/.installed: pyproject.toml constraints/cpu.txt $(PLUGINS:%=%/pyproject.toml)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -U pip wheel setuptools
	$(PY) -m pip install $(CONSTRAINTS) -e ".[test,fast]"
	# The SAM 2 plugin's model package builds against the torch just installed: an isolated build
	# would fetch a second torch (the CUDA one, gigabytes). Its CUDA kernel is optional and skipped.
	SAM2_BUILD_CUDA=0 $(PY) -m pip install $(CONSTRAINTS) --no-build-isolation "sam2==1.1.0"
	$(PY) -m pip install $(CONSTRAINTS) $(PLUGINS:%=-e %[test])
	touch $@

install: $(VENV)/.installed

run: install
	$(VENV)/bin/annotator --demo

test: install
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q

lint: install
	$(VENV)/bin/ruff check annotator tests bench plugins
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

# The standalone desktop build (PyInstaller, one-folder): dist/annotator/annotator
package: install
	$(PY) -m pip install -q "pyinstaller>=6.10"
	$(PY) -m PyInstaller --noconfirm --clean --distpath dist --workpath build/pyinstaller packaging/annotator.spec

# Starts the bundle headless on the demo and segments a box through the bundled model (slow; not CI)
package-test: install
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q -m package -p no:cacheprovider tests/packaging

icons: install
	QT_QPA_PLATFORM=offscreen $(PY) packaging/build_icons.py

clean-venv:
	rm -rf $(VENV)
