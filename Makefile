# Two entry points: `make demo` (the main job on built-in defaults) and `make test`; `make lint` runs in CI too;
# `make recipe` runs TinyBERT's whole two-stage recipe on slices that fit a CPU; `make embedder` distils the
# packaged MiniLM into a smaller sentence embedder.
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

CORPUS ?= ../shared/data/corpus
RECIPE_OUT ?= runs/recipe
TASK ?= sst2
TASK_FOLDER ?= SST-2
MAX_LEN ?= 64
CORPUS_SEQUENCES ?= 4000
TASK_EXAMPLES ?= 1000
TINYBERT4_LAYERS := 0,1,3,4,6

.PHONY: demo test lint recipe embedder
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

# TinyBERT4 (4 layers, d=312) in two stages: general distillation from the pre-trained MiniLM over a
# corpus slice (scored on a held-out part), then task distillation from the general student on an
# augmented task slice, labelled by a fine-tuned MiniLM; then teacher and student side by side.
# Other tasks: make recipe TASK=mrpc TASK_FOLDER=MRPC MAX_LEN=128.
recipe: $(VENV)/.installed
	rm -rf $(RECIPE_OUT)
	$(PY) cli.py dump-teacher --task corpus --data $(CORPUS) --documents file --holdout 0.02 \
		--layers $(TINYBERT4_LAYERS) --limit $(CORPUS_SEQUENCES) --out $(RECIPE_OUT)/corpus.zarr
	$(PY) cli.py dump-teacher --task corpus --data $(CORPUS) --documents file --holdout 0.02 --split holdout \
		--layers $(TINYBERT4_LAYERS) --limit 400 --out $(RECIPE_OUT)/holdout.zarr
	$(PY) cli.py train-student --stage general --cache $(RECIPE_OUT)/corpus.zarr \
		--eval-cache $(RECIPE_OUT)/holdout.zarr --student tinybert4 --epochs-intermediate 2 \
		--lr-intermediate 1e-4 --eval-every 200 --out $(RECIPE_OUT)/general
	$(PY) cli.py finetune-teacher --task $(TASK) --data $(DATA)/$(TASK_FOLDER) --limit $(TASK_EXAMPLES) \
		--epochs 3 --lr 1e-4 --max-seq-len $(MAX_LEN) --out $(RECIPE_OUT)/teacher
	$(PY) cli.py augment --task $(TASK) --data $(DATA)/$(TASK_FOLDER) --limit $(TASK_EXAMPLES) --copies 4 \
		--out $(RECIPE_OUT)/augmented
	$(PY) cli.py dump-teacher --task $(TASK) --data $(RECIPE_OUT)/augmented --teacher $(RECIPE_OUT)/teacher \
		--layers $(TINYBERT4_LAYERS) --max-seq-len $(MAX_LEN) --out $(RECIPE_OUT)/task.zarr
	$(PY) cli.py train-student --cache $(RECIPE_OUT)/task.zarr --student $(RECIPE_OUT)/general --stage all \
		--epochs-intermediate 2 --epochs-prediction 2 --lr-intermediate 1e-4 --lr-prediction 1e-4 \
		--eval-data $(DATA)/$(TASK_FOLDER) --out $(RECIPE_OUT)/student
	$(PY) cli.py compare --model teacher=$(RECIPE_OUT)/teacher --model student=$(RECIPE_OUT)/student \
		--task $(TASK) --data $(DATA)/$(TASK_FOLDER) --max-seq-len $(MAX_LEN) --cache $(RECIPE_OUT)/task.zarr

EMBEDDER_OUT ?= runs/embedder
EMBEDDER_LAYERS ?= 3
EMBEDDER_PARAGRAPHS ?= 20000
EMBEDDER_EPOCHS ?= 1
EMBEDDER_SENTENCES ?= 2000
TEACHER = $(shell $(PY) -c "from cache.data.checkpoints import default_teacher_path as p; print(p())")

# A sentence embedder from the packaged MiniLM (all-MiniLM-L6-v2): its last layer over EMBEDDER_PARAGRAPHS
# corpus paragraphs, run once into a cache (hidden states only); a student copied from EMBEDDER_LAYERS of its
# layers learns the teacher's sentence vectors from it; exported for sentence-transformers (and ONNX Runtime),
# then scored against the teacher on held-out paragraphs and timed beside it on SST-2 dev sentences.
embedder: $(VENV)/.installed
	rm -rf $(EMBEDDER_OUT)
	$(PY) cli.py dump-teacher --task corpus --data $(CORPUS) --documents blank-lines --holdout 0.02 --layers 6 \
		--attention-encoding none --limit $(EMBEDDER_PARAGRAPHS) --out $(EMBEDDER_OUT)/corpus.zarr
	$(PY) cli.py init-student --teacher $(TEACHER) --layers $(EMBEDDER_LAYERS) --out $(EMBEDDER_OUT)/init
	$(PY) cli.py train-student --stage general --objective embedding --embedding-loss cosine \
		--cache $(EMBEDDER_OUT)/corpus.zarr --student $(EMBEDDER_OUT)/init --epochs-intermediate $(EMBEDDER_EPOCHS) \
		--lr-intermediate 1e-4 --out $(EMBEDDER_OUT)/general
	$(PY) cli.py export --model $(EMBEDDER_OUT)/general --format sentence-transformers --onnx --quantize int8 \
		--out $(EMBEDDER_OUT)/model
	$(PY) cli.py export --model $(TEACHER) --teacher $(TEACHER) --format sentence-transformers --onnx \
		--out $(EMBEDDER_OUT)/teacher
	$(PY) cli.py evaluate --embeddings --model $(EMBEDDER_OUT)/model --task corpus --data $(CORPUS) \
		--documents blank-lines --split holdout --limit $(EMBEDDER_SENTENCES)
	$(PY) cli.py compare --embeddings --model teacher=$(EMBEDDER_OUT)/teacher --model embedder=$(EMBEDDER_OUT)/model \
		--task sst2 --data $(DATA)/SST-2 --limit $(EMBEDDER_SENTENCES) --threads 2

test: $(VENV)/.installed
	$(PY) -m pytest -q

# ruff (pycodestyle, pyflakes, isort, bugbear, pyupgrade, simplify; line length 120) and mypy over the library.
lint: $(VENV)/.installed
	$(PY) -m ruff check .
	$(PY) -m mypy
