# Two entry points: `make demo` (the main job on built-in defaults) and `make test`; `make lint` runs in CI too.
# Each creates its own virtual environment in $(VENV).
VENV ?= .venv
PY := $(VENV)/bin/python
DATA ?= ../shared/data/glue
DEMO_OUT ?= runs/demo
DEMO_EXAMPLES ?= 3000

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first: 2.13.0 is the local CPU build; any other spec pulls GBs of CUDA packages.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test]'
	touch $@

.PHONY: demo test lint
# The main job on a slice of SST-2: fine-tune the packaged MiniLM into a task teacher, run it once
# into a cache, start a 2-layer student from its layers 3 and 6, distil it from the cache (the teacher
# is not loaded), compare.
demo: $(VENV)/.installed
	rm -rf $(DEMO_OUT)
	$(PY) cli.py finetune-teacher --task sst2 --data $(DATA)/SST-2 --out $(DEMO_OUT)/teacher \
		--limit $(DEMO_EXAMPLES) --epochs 2 --lr 1e-4 --max-seq-len 64
	$(PY) cli.py dump-teacher --task sst2 --data $(DATA)/SST-2 --teacher $(DEMO_OUT)/teacher \
		--limit $(DEMO_EXAMPLES) --max-seq-len 64 --out $(DEMO_OUT)/sst2.zarr
	$(PY) cli.py cache verify $(DEMO_OUT)/sst2.zarr
	$(PY) cli.py init-student --teacher $(DEMO_OUT)/teacher --layers 2 --out $(DEMO_OUT)/init
	$(PY) cli.py train-student --cache $(DEMO_OUT)/sst2.zarr --student $(DEMO_OUT)/init \
		--stage all --epochs-intermediate 2 --epochs-prediction 3 --lr-intermediate 1e-4 \
		--lr-prediction 1e-4 --eval-data $(DATA)/SST-2 --out $(DEMO_OUT)/student
	$(PY) cli.py compare --model teacher=$(DEMO_OUT)/teacher --model student=$(DEMO_OUT)/student \
		--task sst2 --data $(DATA)/SST-2 --max-seq-len 64 --cache $(DEMO_OUT)/sst2.zarr

test: $(VENV)/.installed
	$(PY) -m pytest -q

# ruff (pycodestyle, pyflakes, isort, bugbear, pyupgrade, simplify; line length 120) and mypy over the library.
lint: $(VENV)/.installed
	$(PY) -m ruff check .
	$(PY) -m mypy
