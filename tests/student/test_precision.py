"""--precision: bfloat16 autocast really runs on a CPU when asked for, tracks float32 closely, and is
recorded; `auto` keeps float32 on a CPU."""

import json

import pytest
import torch

from cache.runtime.precision import autocast, resolve_precision
from cache.teacher.config import FinetuneConfig
from cache.teacher.finetune import finetune_teacher
from student.trainer import train_student
from tests.helpers import dump, logged
from tests.helpers import train_config as config


def test_auto_is_bfloat16_on_cuda_only():
    assert resolve_precision("auto", torch.device("cpu")) == "float32"
    assert resolve_precision("auto", torch.device("cuda")) == "bfloat16"
    assert resolve_precision("bfloat16", torch.device("cpu")) == "bfloat16"
    with pytest.raises(ValueError, match="precision"):
        resolve_precision("float16", torch.device("cpu"))


def test_autocast_runs_matrix_products_in_bfloat16():
    a, b = torch.randn(8, 8), torch.randn(8, 8)
    with autocast("bfloat16", torch.device("cpu")):
        assert (a @ b).dtype == torch.bfloat16
    with autocast("float32", torch.device("cpu")):
        assert (a @ b).dtype == torch.float32


@pytest.mark.slow
def test_bfloat16_student_tracks_float32_on_the_real_teacher(tmp_path, glue):
    """Same cache (real MiniLM, real sentences), seed and batches: the losses differ (autocast is on)
    but by under 2%."""
    from cache.data.checkpoints import default_teacher_path

    dump(default_teacher_path(), glue, tmp_path / "c", limit=48, block_mb=1)
    runs = {}
    for precision in ("float32", "bfloat16"):
        out = tmp_path / precision
        train_student(config(tmp_path / "c", out, stage="intermediate", precision=precision, max_steps=4,
                             student="layers=2,hidden=96,ffn=128,heads=12"), command="test", progress=False)
        runs[precision] = logged(out)
        assert json.loads((out / "train_config.json").read_text())["precision_resolved"] == precision
    assert runs["float32"] != runs["bfloat16"]
    assert runs["bfloat16"] == pytest.approx(runs["float32"], rel=0.02)


def test_finetune_records_its_precision(tmp_path, small_sst2):
    out = tmp_path / "teacher"
    finetune_teacher(FinetuneConfig(task="sst2", data=small_sst2, out=out, epochs=1, batch_size=32, lr=1e-4,
                                    precision="bfloat16", limit=32), command="test", progress=False)
    assert json.loads((out / "finetune_config.json").read_text())["precision_resolved"] == "bfloat16"
