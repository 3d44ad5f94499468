# Two entry points: `make demo` (the main job on built-in defaults) and `make test`.
# Each creates its own virtual environment in $(VENV).
VENV ?= .venv
PY := $(VENV)/bin/python
DATA ?= ../shared/data/glue
DEMO_OUT ?= runs/demo

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first: 2.13.0 is the local CPU build; any other spec pulls GBs of CUDA packages.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test]'
	touch $@

.PHONY: demo test
demo: $(VENV)/.installed
	rm -rf $(DEMO_OUT)/sst2.zarr
	$(PY) cli.py dump-teacher --task sst2 --data $(DATA)/SST-2 --split train --limit 2000 \
		--out $(DEMO_OUT)/sst2.zarr
	$(PY) cli.py cache info $(DEMO_OUT)/sst2.zarr
	$(PY) cli.py cache verify $(DEMO_OUT)/sst2.zarr
	rm -rf $(DEMO_OUT)/student
	$(PY) cli.py train-student --cache $(DEMO_OUT)/sst2.zarr --student layers=3,hidden=192,ffn=768,heads=12 \
		--stage intermediate --epochs-intermediate 1 --out $(DEMO_OUT)/student

test: $(VENV)/.installed
	$(PY) -m pytest -q
