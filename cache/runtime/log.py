"""The run's log: every logged step and evaluation as a JSON line in metrics.jsonl, and
optionally as TensorBoard scalars; written by rank 0 alone."""

import datetime
import json
from pathlib import Path
from typing import Any

METRICS_LOG = "metrics.jsonl"
"""Every logged step and evaluation of a training or fine-tuning run, one JSON object per line."""


class RunLog:
    """metrics.jsonl, and with --tensorboard the same scalars as TensorBoard events in tensorboard/
    (tag `<stage>/<name>`, eval metrics as `<stage>/eval/<metric>`, at the stage's step)."""

    def __init__(self, out: Path, tensorboard: bool, main: bool = True):
        self.path, self.tensorboard, self.main = out / METRICS_LOG, tensorboard, main
        self._writer: Any = None  # a SummaryWriter, opened at the first entry (the run folder exists by then)

    def write(self, entry: dict) -> None:
        """Append `entry` (on rank 0; other ranks log nothing)."""
        if not self.main:
            return
        stamped = {"time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")} | entry
        with open(self.path, "a") as f:
            f.write(json.dumps(stamped) + "\n")
        if self.tensorboard:
            self._scalars(entry)

    def _scalars(self, entry: dict) -> None:
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(self.path.parent / "tensorboard"))
        values = {f"eval/{k}": v for k, v in entry["eval"].items()} if "eval" in entry else entry
        for name, value in values.items():
            if name not in ("stage", "epoch", "step") and isinstance(value, int | float):
                self._writer.add_scalar(f"{entry['stage']}/{name}", value, entry["step"])
        self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
