# Quick start: `make demo` and `make test`. Both create .venv (Python >= 3.10) when missing.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test lint bench clean-venv

$(STAMP): requirements.txt pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 10), "seqdeca needs Python >= 3.10"'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

# The bundled face model's sheet, then video2mesh (fit mode, no trained weights) on a clip made
# from scikit-image's astronaut photograph: outputs/demo/astronaut/{meshes,overlay.mp4,...}.
demo: $(STAMP)
	$(PY) tools/render_face_model.py --out outputs/demo
	$(PY) tools/video2mesh.py --demo --mode fit --out outputs/demo

test: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) tools/bench_render.py

lint: $(STAMP)
	$(PY) -m pip install --quiet ruff
	$(PY) -m ruff check seqdeca tools tests experiments benchmarks
	$(PY) -m ruff format --check seqdeca tools tests experiments benchmarks

clean-venv:
	rm -rf $(VENV)
