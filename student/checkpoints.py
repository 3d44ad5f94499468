"""A run's checkpoint (model, projections, optimizer, scheduler, RNG states of every rank, the
stream position) saved atomically, and continued only by the run that wrote it; the students it
saves as transformers folders."""

import json
import os
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from cache.data.checkpoints import TaskHead, record_head
from cache.format.manifest import Manifest, identity_mismatches
from cache.runtime.attention import plain_attention
from cache.runtime.distributed import Ranks, gather_objects
from cache.runtime.errors import UserError, describe
from cache.runtime.failpoints import failpoint
from student.config import CHECKPOINT, NOT_COMPUTING
from student.setup import Run


@dataclass
class RunState:
    """Where a run is: stage, epoch, batches done in that epoch, optimizer steps in the stage."""

    stage: int = 0
    epoch: int = 0
    batches_done: int = 0
    step: int = 0
    best: float | None = None
    history: list = field(default_factory=list)

    @classmethod
    def saved(cls, state: dict) -> "RunState":
        """The state a checkpoint holds (`batches_done` was once saved as `batch`)."""
        return cls(**{("batches_done" if key == "batch" else key): value for key, value in state.items()})


def save_student(run: Run, folder: Path) -> None:
    """A plain transformers checkpoint (loads with pipeline; a general student with AutoModel), its
    tokenizer, and the projections (which task distillation from it continues)."""
    names = run.manifest.data.label_names
    if type(run.student).__name__.endswith("ForSequenceClassification"):
        record_head(run.student.config, TaskHead(run.task, tuple(names) if names else None,
                                                 trained=any(s.name == "prediction" for s in run.stages)))
    with plain_attention(run.student):
        run.student.save_pretrained(folder)
    run.tokenizer.save_pretrained(folder)
    if run.projected:  # MiniLMv2's relations alone train none: nothing but the student is saved
        run.projections.save(folder)


def save_checkpoint(run: Run, optimizer, scheduler, state: RunState, stage_index: int) -> None:
    """Rank 0 saves what every rank shares (model, optimizer, position) and each rank's RNG states."""
    rng = gather_objects(run.ranks, rng_states())
    if not run.ranks.main:
        return
    checkpoint = {
        "signature": run_signature(run), "cache_manifest": run.manifest.to_json(),
        "state": asdict(state) | {"stage": stage_index}, "model": run.student.state_dict(),
        "projections": run.projections.state_dict(), "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(), "rng": rng,
    }
    path = run.config.out / CHECKPOINT
    tmp = path.with_suffix(".tmp")
    try:
        torch.save(checkpoint, tmp)
    except (OSError, RuntimeError) as e:  # torch's writer reports a failed write (a full disk) as a RuntimeError
        tmp.unlink(missing_ok=True)
        raise UserError(f"{tmp}: cannot be written ({describe(e)}); the last checkpoint is kept: free space and "
                        "run the same command with --resume") from None
    failpoint("checkpoint-written")
    os.replace(tmp, path)  # a checkpoint is whole or absent, never half-written


def rng_states() -> dict:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def run_signature(run: Run) -> dict:
    """Every option that decides what the run computes, as resolved (compared on `--resume`)."""
    options = {key: str(value) if isinstance(value, Path) else value
               for key, value in asdict(run.config).items() if key not in NOT_COMPUTING}
    options |= {"precision": run.precision, "ranks": run.ranks.world}  # --batch-size is per rank
    return json.loads(json.dumps(options))  # tuples as lists, as saved


def load_checkpoint(run: Run) -> dict:
    """The checkpoint to continue from, refused when the run's options or cache differ from its own."""
    path = run.config.out / CHECKPOINT
    try:
        checkpoint = torch.load(path, weights_only=False)
        signature, manifest = checkpoint["signature"], Manifest.from_json(checkpoint["cache_manifest"], str(path))
    except Exception as e:  # noqa: BLE001 - a damaged file fails in many ways; all mean the same
        raise UserError(f"--resume: {path} cannot be read ({describe(e)}); start a new run in another --out") from None
    differences = [f"{option(key)}: the run has {signature.get(key)!r}, this command {value!r}"
                   for key, value in run_signature(run).items() if signature.get(key) != value]
    differences += [f"--cache: {m}" for m in identity_mismatches(manifest, run.manifest,
                                                                  sides=("the checkpoint's cache has", "this one"))]
    if differences:
        raise UserError(f"--resume: this run differs from the checkpoint in {path} ({'; '.join(differences)}); "
                        "resume with the original options, or start a new run in another --out")
    try:
        run.student.load_state_dict(checkpoint["model"])
        run.projections.load_state_dict(checkpoint["projections"])
    except RuntimeError:  # parameters of other names or shapes
        raise UserError(f"--resume: the student in {path} does not fit --student {run.config.student} (was it "
                        "replaced since the run started?); resume with the original student, or start a new run "
                        "in another --out") from None
    return checkpoint


def option(key: str) -> str:
    return "torchrun ranks (WORLD_SIZE)" if key == "ranks" else f"--{key.replace('_', '-')}"


def restore(checkpoint: dict, optimizer, scheduler, ranks: Ranks) -> None:
    optimizer.load_state_dict(checkpoint["optimizer"])
    scheduler.load_state_dict(checkpoint["scheduler"])
    rng = checkpoint["rng"][ranks.rank]
    torch.set_rng_state(rng["torch"])
    np.random.set_state(rng["numpy"])
    random.setstate(rng["python"])
    if rng["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
