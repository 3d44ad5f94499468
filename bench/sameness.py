"""Behaviour unchanged across a refactoring: dumps of 300 SST-2 sentences in three encodings, and
the logged losses of 20 steps of each stage trained from them, made by two versions of the code
and compared (arrays bit for bit, log entries but for their timings).

    python -m bench.sameness make --teacher runs/demo/teacher --out /tmp/before   # on the old code
    python -m bench.sameness make --teacher runs/demo/teacher --out /tmp/after    # on the new code
    python -m bench.sameness compare /tmp/before /tmp/after
"""

import json
import subprocess
import sys
from pathlib import Path

import click

from tests.helpers import GLUE, REPO, assert_same_arrays

ENCODINGS = {
    "maps": [],
    "qk": ["--attention-encoding", "qk"],
    "int8-topk4-tables": ["--hidden-encoding", "int8", "--attention-encoding", "topk:4", "--attention", "probs",
                          "--embedding-output", "tables"],
}
TIMINGS = ("time", "examples_per_s")
"""Logged fields that measure the machine, not the computation."""


@click.group()
def main():
    """Make the outputs of one version of the code, or compare two versions' outputs."""


@main.command()
@click.option("--teacher", required=True, type=click.Path(exists=True, path_type=Path),
              help="A fine-tuned SST-2 teacher (one with a head: the prediction stage needs its logits).")
@click.option("--out", required=True, type=click.Path(path_type=Path))
def make(teacher: Path, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name, options in ENCODINGS.items():
        _cli("dump-teacher", "--task", "sst2", "--data", GLUE / "SST-2", "--limit", 300, "--block-mb", 0.5,
             "--teacher", teacher, "--out", out / name, *options)
        _cli("train-student", "--cache", out / name, "--student", "layers=2,hidden=64,ffn=128,heads=4", "--stage",
             "all", "--max-steps", 20, "--log-every", 1, "--batch-size", 16, "--workers", 0,
             "--out", out / f"run-{name}")


@main.command()
@click.argument("before", type=click.Path(exists=True, path_type=Path))
@click.argument("after", type=click.Path(exists=True, path_type=Path))
def compare(before: Path, after: Path) -> None:
    for name in ENCODINGS:
        assert_same_arrays(before / name, after / name)
        logs = [_entries(side / f"run-{name}" / "metrics.jsonl") for side in (before, after)]
        steps = sum("loss" in entry for entry in logs[0])
        print(f"{name}: arrays identical; {steps} logged steps {'identical' if logs[0] == logs[1] else 'DIFFER'}")


def _entries(log: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(line).items() if k not in TIMINGS} for line in log.read_text().splitlines()]


def _cli(*args) -> None:
    subprocess.run([sys.executable, str(REPO / "cli.py"), *map(str, args)], check=True, capture_output=True, cwd=REPO)


if __name__ == "__main__":
    main()
