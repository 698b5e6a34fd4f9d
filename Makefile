# The project's two commands: `make run` serves the app, `make test` runs every test.
# Both build a virtual environment in .venv first and reuse it on later calls.
#
# torch is installed on its own before the requirements. TORCH picks the build:
#   make run TORCH="torch==2.13.0"                      (default: the pinned release)
#   make run TORCH="torch --index-url <your CPU wheel index>"   (a small CPU-only build)

PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
PORT ?= 8501
PY := $(VENV)/bin/python

.PHONY: run test demo lint clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(VENV)/.runtime: requirements.txt | $(PY)
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev: requirements-dev.txt $(VENV)/.runtime
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

run: $(VENV)/.runtime
	$(PY) -m streamlit run explorer/app.py --server.port $(PORT)

test: $(VENV)/.dev
	bash scripts/ensure_chromium.sh
	$(PY) -m pytest

demo: $(VENV)/.runtime
	$(PY) -m tinytf demo

lint: $(VENV)/.dev
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
