"""What every benchmark shares: where results go, the default data, a timer and the `--data` option."""

import json
import time
from pathlib import Path

import click

REPO = Path(__file__).resolve().parents[1]
GLUE = REPO.parent / "shared" / "data" / "glue"
RESULTS = REPO / "bench" / "results"

data_option = click.option("--data", type=click.Path(path_type=Path), default=GLUE / "SST-2",
                           help="The SST-2 folder (train.tsv, dev.tsv).")


def timed(fn, *args, **kwargs):
    """(result, wall time in seconds) of one call."""
    started = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - started


def seconds(fn, *args, **kwargs) -> float:
    """Wall time of one call."""
    return timed(fn, *args, **kwargs)[1]


def save_result(name: str, result: dict) -> None:
    """bench/results/<name>.json (git-ignored), and where it went."""
    out = RESULTS / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"results: {out.relative_to(REPO)}")
