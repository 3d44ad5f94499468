"""Lossy attention: uint8 probabilities against float16, in size, in error and in the student.

    python -m bench.lossy_bench                     # fine-tunes a teacher on 3,000 SST-2 sentences
    python -m bench.lossy_bench --teacher DIR       # an existing fine-tuned teacher

Dumps the same teacher twice with `--attention probs`: attention in float16, and in uint8 (round
to the nearest 1/255). Reports the attention error over every stored value, the cache sizes, and
the dev accuracy of the same student (the demo's: 2 layers initialised from the teacher, 2
intermediate and 3 prediction epochs, same seed) distilled from each cache. Writes
bench/results/lossy.json.
"""

import platform
import tempfile
from pathlib import Path

import click

from bench.common import data_option, save_result
from cache import open_cache
from cache.checkpoints import quiet_transformers
from cache.config import InitConfig
from cache.dtypes import from_storage, to_float
from cache.dump import DumpConfig, dump_teacher
from cache.init_student import init_student
from cache.inspect import cache_summary
from student.evaluate import evaluate_saved
from student.finetune import FinetuneConfig, finetune_teacher
from student.trainer import TrainConfig, train_student

STUDENT_LAYERS = 2  # the demo's student: teacher layers 3 and 6 at the teacher's width


def attention_error(exact: Path, quantised: Path) -> dict:
    """Max and mean |p_uint8 - p_float16| over every stored attention probability."""
    worst, total, count = 0.0, 0.0, 0
    for a, b in zip(open_cache(exact).iter_blocks(), open_cache(quantised).iter_blocks(), strict=True):
        for layer in a.attention:
            x = from_storage(a.attention[layer], a.attention_dtype).float()
            y = to_float(from_storage(b.attention[layer], b.attention_dtype), b.attention_dtype)
            diff = (x - y).abs()
            worst, total, count = max(worst, float(diff.max())), total + float(diff.sum()), count + diff.numel()
    return {"max_abs": worst, "mean_abs": total / count, "values": count}


def distilled_accuracy(cache: Path, out: Path, data: Path, teacher: Path) -> float:
    init_student(InitConfig(teacher=str(teacher), out=out.with_name(out.name + "-init"), layers=STUDENT_LAYERS),
                 command="bench")
    config = TrainConfig(cache=cache, out=out, student=str(out.with_name(out.name + "-init")), stage="all",
                         eval_data=data,
                         epochs_intermediate=2, epochs_prediction=3, lr_intermediate=1e-4, lr_prediction=1e-4)
    train_student(config, command="bench", progress=False)
    return evaluate_saved(out / "best", "sst2", data, "dev", 64)["accuracy"]


@click.command()
@click.option("--teacher", type=click.Path(path_type=Path), default=None,
              help="A fine-tuned SST-2 teacher (default: fine-tune one as the demo does).")
@click.option("--limit", default=3000, help="First N SST-2 training sentences.")
@data_option
def main(teacher, limit, data):
    quiet_transformers()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if teacher is None:
            teacher = tmp / "teacher"
            finetune_teacher(FinetuneConfig(task="sst2", data=data, out=teacher, epochs=2, lr=1e-4, limit=limit,
                                            max_seq_len=64), command="bench", progress=False)
        caches = {}
        for dtype in ("float16", "uint8"):
            caches[dtype] = tmp / f"{dtype}.zarr"
            dump_teacher(DumpConfig(task="sst2", data=data, split="train", out=caches[dtype], teacher=str(teacher),
                                    attention="probs", attention_dtype=dtype, limit=limit, max_seq_len=64),
                         command="bench", progress=False)
        sizes = {dtype: cache_summary(path)["sizes"]["target_bytes"] for dtype, path in caches.items()}
        result = {"machine": f"{platform.node()} {platform.machine()}", "examples": limit,
                  "target_bytes": sizes, "uint8_over_float16_size": sizes["uint8"] / sizes["float16"],
                  "attention_error": attention_error(caches["float16"], caches["uint8"]),
                  "student_dev_accuracy": {dtype: distilled_accuracy(path, tmp / f"student-{dtype}", data, teacher)
                                           for dtype, path in caches.items()},
                  "teacher_dev_accuracy": evaluate_saved(teacher, "sst2", data, "dev", 64)["accuracy"]}
    save_result("lossy", result)
    error, accuracy = result["attention_error"], result["student_dev_accuracy"]
    print(f"size uint8 / float16 cache: {result['uint8_over_float16_size']:.3f}")
    print(f"attention probability error: max {error['max_abs']:.5f}, mean {error['mean_abs']:.6f} "
          f"over {error['values']:,} values")
    print(f"student dev accuracy: float16 {accuracy['float16']:.4f}, uint8 {accuracy['uint8']:.4f} "
          f"(teacher {result['teacher_dev_accuracy']:.4f})")


if __name__ == "__main__":
    main()
