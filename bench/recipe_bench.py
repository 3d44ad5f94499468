"""The whole recipe: dump once and train from the cache, against online distillation, for N epochs.

    python -m bench.recipe_bench                        # real MiniLM teacher, 500 SST-2 sentences
    python -m bench.recipe_bench --teacher-shape base   # random BERT-base-shaped teacher

The paper's task-specific distillation: the intermediate stage for N epochs, then the prediction
stage for 3, with a TinyBERT4-shaped student. The cache route pays for one dump and then trains
from it; the online route runs the teacher in the loop. Both run in this process, for N = 1, 5
and 20. From the per-epoch costs of N = 5 and 20 it reports the N where the cache starts to pay,
and where it pays from when K experiments share one cache. Writes bench/results/recipe-<teacher>.json.
"""

import platform
import tempfile
from dataclasses import replace
from pathlib import Path

import click

from bench.common import data_option, save_result, seconds
from bench.dump_bench import base_shaped_teacher
from bench.online import OnlineTargets
from cache.data.checkpoints import default_teacher_path, quiet_transformers
from cache.teacher.dump import DumpConfig, dump_teacher
from student.trainer import TrainConfig, train_student

EPOCHS = (1, 5, 20)



def minilm_with_head(folder: Path) -> str:
    """MiniLM with a (random) two-class head, so that the prediction stage has logits to match:
    the recipe's speed does not depend on the head's weights."""
    from transformers import AutoTokenizer, BertForSequenceClassification

    BertForSequenceClassification.from_pretrained(default_teacher_path(), num_labels=2).save_pretrained(folder)
    AutoTokenizer.from_pretrained(default_teacher_path()).save_pretrained(folder)
    return str(folder)


def crossover(dump_s: float, cache: dict, online: dict, experiments: int = 1) -> float | None:
    """The N above which dump/experiments + cache(N) < online(N), from linear fits through N = 5 and 20."""
    per_epoch_cache = (cache[20] - cache[5]) / 15
    per_epoch_online = (online[20] - online[5]) / 15
    if per_epoch_online <= per_epoch_cache:
        return None  # the cache never pays
    fixed_cache, fixed_online = cache[5] - 5 * per_epoch_cache, online[5] - 5 * per_epoch_online
    return max(0.0, (dump_s / experiments + fixed_cache - fixed_online) / (per_epoch_online - per_epoch_cache))


@click.command()
@click.option("--teacher-shape", type=click.Choice(["minilm", "base"]), default="minilm")
@click.option("--limit", default=500, help="First N SST-2 training sentences.")
@click.option("--workers", type=int, default=None, help="Reader processes of the cache route (default: the trainer's).")
@data_option
def main(teacher_shape, limit, workers, data):
    quiet_transformers()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        make_teacher = minilm_with_head if teacher_shape == "minilm" else base_shaped_teacher
        teacher = make_teacher(tmp / "teacher")
        dump = DumpConfig(task="sst2", data=data, split="train", out=tmp / "c.zarr", teacher=teacher, limit=limit,
                          max_seq_len=64)
        dump_s = seconds(dump_teacher, dump, command="bench", progress=False)
        base = TrainConfig(cache=dump.out, out=tmp / "run", student="tinybert4", stage="all", workers=workers,
                           epochs_prediction=3, save_every=10**9)
        cache, online = {}, {}
        for n in EPOCHS:
            config = replace(base, epochs_intermediate=n)
            cache[n] = seconds(train_student, replace(config, out=tmp / f"cache{n}"), command="bench", progress=False)
            online[n] = seconds(train_student, replace(config, out=tmp / f"online{n}", workers=0), command="bench",
                                progress=False, source=OnlineTargets(dump))
            print(f"N={n}: dump {dump_s:.0f} s + cache {cache[n]:.0f} s vs online {online[n]:.0f} s", flush=True)
    result = {"machine": f"{platform.node()} {platform.machine()}", "teacher": teacher_shape, "examples": limit,
              "workers": workers,
              "dump_seconds": dump_s, "cache_seconds": cache, "online_seconds": online,
              "online_over_cache_route": {n: online[n] / (dump_s + cache[n]) for n in EPOCHS},
              "crossover_epochs": crossover(dump_s, cache, online),
              "crossover_epochs_5_experiments": crossover(dump_s, cache, online, experiments=5)}
    save_result(f"recipe-{teacher_shape}", result)
    print(f"{'N':>3}{'cache route':>13}{'online':>9}{'online / cache route':>22}")
    for n in EPOCHS:
        print(f"{n:>3}{dump_s + cache[n]:>12.0f}s{online[n]:>8.0f}s{result['online_over_cache_route'][n]:>22.2f}")
    print(f"the cache pays from N = {result['crossover_epochs']} (one experiment), "
          f"{result['crossover_epochs_5_experiments']} (5 experiments sharing the cache)")


if __name__ == "__main__":
    main()
