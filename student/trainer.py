"""The distillation recipe: a TinyBERT student trained from a teacher cache, teacher never loaded.

Read top to bottom: `train_student` resolves and checks the whole configuration against the cache
before any work, then runs the stages (intermediate: embedding + hidden + attention losses;
prediction: logits; general: the intermediate losses on a corpus, for a student without a head),
evaluating and checkpointing as it goes. A checkpoint holds model,
projections, optimizer, scheduler, RNG states and the stream position, so `--resume` continues
exactly where an interrupted run stopped.

Under torchrun the student trains with DDP: every rank builds the same run, streams its share of
each global batch (--batch-size per rank) and steps the same optimizer on averaged gradients;
rank 0 alone writes logs, evaluates and saves.
"""

import datetime
import functools
import json
import math
import operator
import os
import random
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, cast

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm
from transformers import BertForSequenceClassification

from cache import Cache, RaggedExamples, open_cache
from cache.data.checkpoints import TaskHead, check_length, load_tokenizer, record_head
from cache.data.readers import evaluation_columns, load_examples
from cache.data.tasks import GENERIC_TASKS
from cache.format.location import Target
from cache.format.manifest import Manifest, identity_mismatches
from cache.runtime.attention import capture_implementation
from cache.runtime.device import resolve_device
from cache.runtime.distributed import ONE_PROCESS, Ranks, current_ranks, gather_objects, process_group, sum_over_ranks
from cache.runtime.errors import UserError, describe
from cache.runtime.failpoints import failpoint
from cache.runtime.layer_map import resolve_layer_map
from cache.runtime.records import write_record
from student.config import (
    CHECKPOINT,
    METRICS_LOG,
    NOT_COMPUTING,
    RUN_RECORD,
    Stage,
    TrainConfig,
    check_compatibility,
    parse_student,
    regression_head,
    resolve_attention_kind,
    resolve_layer_weights,
    resolve_stages,
)
from student.evaluate import evaluate, metric_for
from student.losses import attention_mse, head_map, hidden_mse, regression_mse, soft_cross_entropy
from student.metrics import MAIN_METRIC
from student.model import Projections, build_student, load_projections
from student.precision import autocast, resolve_precision
from student.stream import Batch, EpochPlan, pad_batch, stream_batches

REMOTE_PREFETCH = 8
"""Blocks read at once from an object store (each read waits on round trips; docs/benchmarks.md)."""
RANK_SEED_STRIDE = 1_000_003
"""Rank r draws its dropout masks from seed + r * stride: ranks must not drop the same units."""


@dataclass
class RunState:
    """Where a run is: stage, epoch, batches done in that epoch, optimizer steps in the stage."""

    stage: int = 0
    epoch: int = 0
    batch: int = 0
    step: int = 0
    best: float | None = None
    history: list = field(default_factory=list)


class Run:
    """The resolved pieces of one training run (everything `train_student` sets up)."""

    def __init__(self, config: TrainConfig, source: "TargetSource | None" = None, ranks: Ranks = ONE_PROCESS):
        self.config, self.ranks = config, ranks
        self.device = resolve_device(config.device)
        self.workers = config.workers if config.workers is not None else 0 if self.device.type == "cpu" else 2
        self.precision = resolve_precision(config.precision, self.device)
        manifest = source.manifest if source is not None else \
            open_cache(config.cache, storage_options=config.storage_options).manifest  # complete only
        self.manifest, self.teacher = manifest, manifest.teacher
        self.task = manifest.data.task
        self.regression = regression_head(manifest)
        self.stages = resolve_stages(config, self.task)
        seed_everything(config.seed)  # the student's random initialisation
        shape = parse_student(config.student)
        self.student = build_student(shape, self.teacher.config, self.num_labels, head=config.stage != "general")
        check_length(self.student.config, manifest.max_seq_len, f"--student: {config.student}")
        self.layer_map = resolve_layer_map(config.layer_map, self.student.config.num_hidden_layers,
                                           self.teacher.num_layers)
        self.weights = resolve_layer_weights(config.layer_weights, len(self.layer_map), self.stages)
        self.attention_kind = resolve_attention_kind(config.attention_loss, manifest)
        self.head_map = head_map(self.student.config.num_attention_heads, self.teacher.num_heads)
        check_compatibility(manifest, self.layer_map, self.stages)
        if manifest.data.examples < ranks.world:
            raise UserError(f"--cache: {manifest.data.examples} examples cannot be shared by {ranks.world} ranks")
        self.targets = source if source is not None else \
            CachedTargets(config.cache, [0, *self.layer_map], config.storage_options, config.prefetch_blocks)
        self.eval_targets = None
        if config.eval_cache is not None:
            eval_targets = CachedTargets(config.eval_cache, [0, *self.layer_map], config.storage_options,
                                         config.prefetch_blocks)
            check_compatibility(eval_targets.manifest, self.layer_map, self.stages, "--eval-cache")
            self.eval_targets = eval_targets
        self.tokenizer = self.targets.load_tokenizer()
        check_student_tokenizer(shape, self.tokenizer, manifest)
        self.student.to(self.device)
        self.projections = load_projections(shape, self.student.config.hidden_size, self.teacher.hidden_size,
                                            len(self.layer_map), config.projections,
                                            config.fresh_projections).to(self.device)
        self.eval_examples = load_examples(
            self.task, config.eval_data, config.eval_split,
            columns=evaluation_columns(manifest.data.columns if self.task in GENERIC_TASKS else None,
                                       manifest.data.label_names)) if config.eval_data else None
        self.log = RunLog(config.out, config.tensorboard, ranks.main)
        distiller = Distiller(self)
        self.model: torch.nn.Module = distiller if not ranks.distributed else DistributedDataParallel(
            distiller, device_ids=[self.device.index] if self.device.type == "cuda" else None,
            find_unused_parameters=True)  # the prediction stage leaves the projections, the others the head, unused

    @property
    def num_labels(self) -> int:
        if self.teacher.num_labels:
            return self.teacher.num_labels
        names = self.manifest.data.label_names
        return 1 if self.regression else len(names) if names else 2


class Distiller(torch.nn.Module):
    """The student and its projections as one module whose forward returns the loss parts: what
    DDP wraps, so that its gradient hooks cover the projections (used after the student's forward)."""

    def __init__(self, run: Run):
        super().__init__()
        self.student, self.projections = run.student, run.projections
        self.run = [run]  # in a list: not a submodule

    def forward(self, batch: Batch, intermediate: bool) -> dict[str, torch.Tensor]:
        run = self.run[0]
        out = self.student(input_ids=batch.input_ids, token_type_ids=batch.token_type_ids,
                           attention_mask=batch.mask.long(), output_hidden_states=intermediate,
                           output_attentions=intermediate)
        if intermediate:
            parts = intermediate_losses(out.hidden_states, out.attentions, batch, run.layer_map, run.weights,
                                        self.projections)
        else:
            parts = prediction_losses(out.logits, batch, run.regression, run.config.temperature, run.weights[-1])
        return parts if batch.counts else {name: value * 0 for name, value in parts.items()}


class TargetSource(Protocol):
    """What the trainer consumes: `CachedTargets` here, and the online baseline in bench/online.py,
    which computes the same batches with a live teacher."""

    manifest: Manifest
    block_starts: np.ndarray

    def load_tokenizer(self): ...

    def batches(self, plan: EpochPlan, epoch: int, skip: int, workers: int, device: torch.device,
                probabilities: bool, intermediate: bool) -> Iterator[Batch]: ...


class CachedTargets:
    """Distillation targets streamed from a teacher cache: what `train-student` always uses."""

    def __init__(self, path: Target, layers: list[int], storage_options: dict | None = None,
                 prefetch: int | None = None):
        self.cache: Cache = open_cache(path, layers=layers, storage_options=storage_options)
        self.prefetch = prefetch or (1 if self.cache.store.root.local else REMOTE_PREFETCH)
        # the prediction stage reads no layer
        self.logits_only: Cache = open_cache(path, layers=[], storage_options=storage_options)
        self.manifest = self.cache.manifest
        self.block_starts = self.cache.block_starts

    def load_tokenizer(self):
        return self.cache.load_tokenizer()

    def batches(self, plan: EpochPlan, epoch: int, skip: int, workers: int, device: torch.device,
                probabilities: bool, intermediate: bool) -> Iterator[Batch]:
        """The epoch's padded batches in plan order, after the first `skip`; the layers' targets
        only for the intermediate stage."""
        cache = self.cache if intermediate else self.logits_only
        embeddings = cache.embeddings.to(device) if cache.embeddings is not None else None
        for share in stream_batches(cache, plan, epoch, skip, workers, self.prefetch):
            yield pad_batch(cast(RaggedExamples, share.examples), device, probabilities, share, embeddings)


def check_student_tokenizer(student, tokenizer, manifest: Manifest) -> None:
    """A checkpoint student that carries a tokenizer must carry the cache's: the whole tokenizer
    where it has one, its vocabulary where it has only a vocab.txt (the reference code's format)."""
    if not isinstance(student, Path):
        return
    from cache.data.tokenize import tokenizer_fingerprint

    if (student / "tokenizer_config.json").exists() or (student / "tokenizer.json").exists():
        same = tokenizer_fingerprint(load_tokenizer(student, "--student")) == manifest.tokenizer_fingerprint
    elif (student / "vocab.txt").exists():
        vocabulary = (student / "vocab.txt").read_text(encoding="utf-8").splitlines()
        same = vocabulary == tokenizer.convert_ids_to_tokens(list(range(tokenizer.vocab_size)))
    else:
        return
    if not same:
        raise UserError(f"--student: {student} has another tokenizer than the cache's teacher; a student "
                        "must read the same token ids as the targets were computed on")


def train_student(config: TrainConfig, command: str, progress: bool = True,
                  source: "TargetSource | None" = None) -> dict:
    """Run every stage of `config`; returns the final evaluation (empty without --eval-data or
    --eval-cache).

    `source` replaces the cache as the provider of targets (the online baseline in bench/).
    """
    config.check()
    ranks = current_ranks()
    with process_group(ranks, "nccl" if resolve_device(config.device).type == "cuda" else "gloo"):
        run = Run(config, source, ranks)
        checkpoint = _load_checkpoint(run) if config.resume else None
        if ranks.main:
            _write_run_files(run, command)
        state = RunState(**checkpoint["state"]) if checkpoint else RunState()
        try:
            for index, stage in enumerate(run.stages):
                if index < state.stage:
                    continue
                _train_stage(run, stage, index, state, progress and ranks.main, checkpoint)
                state = RunState(stage=index + 1, best=state.best, history=state.history)
        finally:
            run.log.close()
        if ranks.main:
            _save_student(run, config.out / "last")
    return state.history[-1]["eval"] if state.history else {}


def _write_run_files(run: Run, command: str) -> None:
    out = run.config.out
    out.mkdir(parents=True, exist_ok=True)
    write_record(out / RUN_RECORD, run.config, command, layer_map_resolved=run.layer_map,
                 layer_weights_resolved=run.weights, attention_kind=run.attention_kind, head_map=run.head_map,
                 projections_resolved=run.projections.sharing,
                 stages=[asdict(s) for s in run.stages], teacher_weights_sha256=run.teacher.weights_sha256,
                 num_labels=run.num_labels, workers_resolved=run.workers, precision_resolved=run.precision,
                 ranks=run.ranks.world, global_batch_size=run.config.batch_size * run.ranks.world)
    with open(out / "command.txt", "a") as f:  # every command that ran in this folder (a resume appends)
        f.write(command + "\n")


def _train_stage(run: Run, stage: Stage, index: int, state: RunState, progress: bool,
                 checkpoint: dict | None) -> None:
    config = run.config
    plan = EpochPlan(run.targets.block_starts, config.batch_size * run.ranks.world, config.window_blocks,
                     config.seed + index, run.ranks)
    total = sum(plan.steps_per_epoch(e) for e in range(stage.epochs))
    total = min(total, config.max_steps) if config.max_steps else total
    intermediate = stage.intermediate
    run.student.set_attn_implementation(capture_implementation(run.attention_kind) if intermediate else "sdpa")
    params = [*run.student.parameters(), *(run.projections.parameters() if intermediate else [])]
    optimizer = torch.optim.AdamW(params, lr=stage.lr, weight_decay=config.weight_decay,
                                  fused=run.device.type == "cuda")
    scheduler = linear_schedule(optimizer, total, int(config.warmup * total))
    if checkpoint is not None and state.step:  # resuming inside this stage
        _restore(checkpoint, optimizer, scheduler, run.ranks)
    else:
        seed_everything(config.seed + index + run.ranks.rank * RANK_SEED_STRIDE)
    bar = tqdm(total=total, initial=state.step, desc=stage.name, unit="step", disable=not progress, dynamic_ncols=True)
    started, seen = time.perf_counter(), 0
    run.student.train()
    probabilities = run.attention_kind == "probs" and run.manifest.decoded_attention == "scores"
    while state.step < total and state.epoch < stage.epochs:
        for batch in run.targets.batches(plan, state.epoch, state.batch, run.workers, run.device, probabilities,
                                         intermediate):
            parts = _train_step(run, batch, intermediate, optimizer, scheduler)
            state.batch, state.step, seen = state.batch + 1, state.step + 1, seen + batch.totals.examples
            bar.update(1)
            saving = state.step % config.save_every == 0
            evaluating = config.eval_every is not None and state.step % config.eval_every == 0
            if saving or evaluating or state.step % config.log_every == 0 or state.step == total:  # syncs a GPU
                rate, values = seen / (time.perf_counter() - started), _over_ranks(run.ranks, parts)
                check_finite(values, stage.name, state.step)  # before anything is saved
                bar.set_postfix({k: f"{v:.4g}" for k, v in values.items()} | {"ex/s": f"{rate:.0f}"}, refresh=False)
                run.log.write({"stage": stage.name, "epoch": state.epoch, "step": state.step, **values,
                           "lr": scheduler.get_last_lr()[0], "examples_per_s": rate})
            if evaluating:
                _evaluate(run, stage, state)
            if saving:
                _save_checkpoint(run, optimizer, scheduler, state, index)
            if state.step >= total:
                break
        else:
            state.epoch, state.batch = state.epoch + 1, 0
    bar.close()
    if not (config.eval_every and state.step % config.eval_every == 0):  # else just evaluated
        _evaluate(run, stage, state)
    done = RunState(stage=index + 1, best=state.best, history=state.history)
    _save_checkpoint(run, optimizer, scheduler, done, index + 1)


def _over_ranks(ranks: Ranks, parts: dict[str, torch.Tensor]) -> dict[str, float]:
    """The global batch's loss parts: the sum of the ranks' shares (a collective: every rank calls it)."""
    totals = sum_over_ranks(ranks, torch.stack(list(parts.values())).float())
    return dict(zip(parts, totals.tolist(), strict=True))


def check_finite(parts: dict[str, float], stage: str, step: int) -> None:
    """A NaN or infinite loss is refused before anything is saved: the last checkpoint stays good."""
    bad = {name: value for name, value in parts.items() if not math.isfinite(value)}
    if bad:
        values = ", ".join(f"{k} {v}" for k, v in bad.items())
        raise UserError(f"{stage} step {step}: the loss is not finite ({values}); "
                        "nothing was saved after the last checkpoint: lower the learning rate or check the cache")


def _train_step(run: Run, batch: Batch, intermediate: bool, optimizer, scheduler) -> dict[str, torch.Tensor]:
    """One optimiser step; returns the detached loss parts (this rank's share of the global
    batch's), left on the device so a GPU never waits."""
    with autocast(run.precision, run.device):
        parts = run.model(batch, intermediate)
    loss = _total(parts.values())
    (loss * run.ranks.world).backward()  # DDP averages the ranks' gradients; the shares' losses add up
    torch.nn.utils.clip_grad_norm_([p for group in optimizer.param_groups for p in group["params"]],
                                   run.config.max_grad_norm)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return {"loss": loss.detach()} | {name: value.detach() for name, value in parts.items()}


def intermediate_losses(hidden: Sequence[torch.Tensor], attention: Sequence[torch.Tensor], batch: Batch,
                        layer_map: list[int], weights: list[float],
                        projections: Projections) -> dict[str, torch.Tensor]:
    """lambda_0 L_embd + sum_m lambda_m (L_hidn + L_attn), as named parts.

    hidden: the student's M+1 hidden states (B, L, d'), embeddings first; attention: its M maps
    (B, h, L, L); layer_map: g(1..M); weights: lambda_0..lambda_{M+1}.
    """
    mask, pairs, totals = batch.mask, list(enumerate(layer_map, start=1)), batch.totals
    embd = weights[0] * hidden_mse(hidden[0].float(), batch.hidden[0], mask, projections.layer(0), totals.tokens)
    hidn = _total(weights[m] * hidden_mse(hidden[m].float(), batch.hidden[n], mask, projections.layer(m),
                                          totals.tokens) for m, n in pairs)
    attn = _total(weights[m] * attention_mse(attention[m - 1].float(), batch.attention[n], mask, totals.pairs)
                  for m, n in pairs)
    return {"embd": embd, "hidn": hidn, "attn": attn}


def prediction_losses(logits: torch.Tensor, batch: Batch, regression: bool, temperature: float,
                      weight: float) -> dict[str, torch.Tensor]:
    """lambda_{M+1} L_pred: soft cross-entropy on the teacher's logits (MSE for regression). logits: (B, C)."""
    if batch.logits is None:
        raise UserError("the cache has no teacher logits for the prediction stage")
    targets = batch.logits
    examples = batch.totals.examples
    loss = regression_mse(logits.float(), targets, examples) if regression else \
        soft_cross_entropy(logits.float(), targets, temperature, examples)
    return {"pred": weight * loss}


def _total(values: Iterable[torch.Tensor]) -> torch.Tensor:
    """The sum of loss terms (as `sum`, without its leading integer 0)."""
    return functools.reduce(operator.add, values)


def _evaluate(run: Run, stage: Stage, state: RunState) -> None:
    """The held-out intermediate losses (--eval-cache) in the stages that train on them; the task
    metric (--eval-data) of the last stage only: before the prediction stage the classifier is
    untrained, so its score would only mislead. The last stage's evaluation picks `best/`. On rank
    0 only: the others wait for it at the next step's gradient exchange."""
    if not run.ranks.main:
        return
    last = stage.name == run.stages[-1].name
    if stage.intermediate and run.eval_targets is not None:
        losses = held_out_losses(run)
        _record_evaluation(run, stage, state, losses, -losses["loss"] if last and run.eval_examples is None else None)
    if run.eval_examples is not None and last:
        metrics = evaluate(run.student, run.tokenizer, run.eval_examples, run.manifest.max_seq_len)
        _record_evaluation(run, stage, state, metrics, metrics[MAIN_METRIC[metric_for(run.task)]])


@torch.no_grad()
def held_out_losses(run: Run) -> dict[str, float]:
    """The intermediate losses over the whole --eval-cache: each batch's means weighted by its real
    tokens (embedding, hidden) or cells (attention), so that they are the means over the whole
    cache, whatever the batch size."""
    assert run.eval_targets is not None
    plan = EpochPlan(run.eval_targets.block_starts, run.config.batch_size, run.config.window_blocks, seed=0)
    probabilities = run.attention_kind == "probs" and run.eval_targets.manifest.decoded_attention == "scores"
    sums = {"embd": 0.0, "hidn": 0.0, "attn": 0.0}
    tokens = cells = 0
    run.student.eval()
    for batch in run.eval_targets.batches(plan, 0, 0, run.workers, run.device, probabilities, intermediate=True):
        with autocast(run.precision, run.device):
            out = run.student(input_ids=batch.input_ids, token_type_ids=batch.token_type_ids,
                              attention_mask=batch.mask.long(), output_hidden_states=True, output_attentions=True)
        parts = intermediate_losses(out.hidden_states, out.attentions, batch, run.layer_map, run.weights,
                                    run.projections)
        lengths = batch.mask.sum(1)
        batch_tokens, batch_cells = int(lengths.sum()), int(lengths.square().sum())
        sums["embd"] += parts["embd"].item() * batch_tokens
        sums["hidn"] += parts["hidn"].item() * batch_tokens
        sums["attn"] += parts["attn"].item() * batch_cells
        tokens, cells = tokens + batch_tokens, cells + batch_cells
    run.student.train()
    means = {"embd": sums["embd"] / tokens, "hidn": sums["hidn"] / tokens, "attn": sums["attn"] / cells}
    return {"loss": sum(means.values())} | means


def _record_evaluation(run: Run, stage: Stage, state: RunState, metrics: dict, score: float | None) -> None:
    """Log an evaluation; a `score` (higher is better) that beats the best so far saves `best/`."""
    entry = {"stage": stage.name, "step": state.step, "eval": metrics}
    state.history.append(entry)
    run.log.write(entry)
    if score is None:
        return
    if state.best is None or score > state.best:
        state.best = score
        _save_student(run, run.config.out / "best")


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


def _save_student(run: Run, folder: Path) -> None:
    """A plain transformers checkpoint (loads with pipeline; a general student with AutoModel), its
    tokenizer, and the projections (which task distillation from it continues)."""
    current = run.student.config._attn_implementation
    run.student.set_attn_implementation("sdpa")  # never save our capture function into the config
    names = run.manifest.data.label_names
    if isinstance(run.student, BertForSequenceClassification):
        record_head(run.student.config, TaskHead(run.task, tuple(names) if names else None,
                                                 trained=any(s.name == "prediction" for s in run.stages)))
    run.student.save_pretrained(folder)
    run.student.set_attn_implementation(current)
    run.tokenizer.save_pretrained(folder)
    run.projections.save(folder)


def _save_checkpoint(run: Run, optimizer, scheduler, state: RunState, stage_index: int) -> None:
    """Rank 0 saves what every rank shares (model, optimizer, position) and each rank's RNG states."""
    rng = gather_objects(run.ranks, _rng_states())
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


def _rng_states() -> dict:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def run_signature(run: Run) -> dict:
    """Every option that decides what the run computes, as resolved (compared on `--resume`)."""
    options = {key: str(value) if isinstance(value, Path) else value
               for key, value in asdict(run.config).items() if key not in NOT_COMPUTING}
    options |= {"precision": run.precision, "ranks": run.ranks.world}  # --batch-size is per rank
    return json.loads(json.dumps(options))  # tuples as lists, as saved


def _load_checkpoint(run: Run) -> dict:
    """The checkpoint to continue from, refused when the run's options or cache differ from its own."""
    path = run.config.out / CHECKPOINT
    try:
        checkpoint = torch.load(path, weights_only=False)
        signature, manifest = checkpoint["signature"], Manifest.from_json(checkpoint["cache_manifest"], str(path))
    except Exception as e:  # noqa: BLE001 - a damaged file fails in many ways; all mean the same
        raise UserError(f"--resume: {path} cannot be read ({describe(e)}); start a new run in another --out") from None
    differences = [f"{_option(key)}: the run has {signature.get(key)!r}, this command {value!r}"
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


def _option(key: str) -> str:
    return "torchrun ranks (WORLD_SIZE)" if key == "ranks" else f"--{key.replace('_', '-')}"


def _restore(checkpoint: dict, optimizer, scheduler, ranks: Ranks) -> None:
    optimizer.load_state_dict(checkpoint["optimizer"])
    scheduler.load_state_dict(checkpoint["scheduler"])
    rng = checkpoint["rng"][ranks.rank]
    torch.set_rng_state(rng["torch"])
    np.random.set_state(rng["numpy"])
    random.setstate(rng["python"])
    if rng["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])


def linear_schedule(optimizer, total: int, warmup: int):
    """Linear warm-up over `warmup` steps, then linear decay to 0 at `total`."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / max(warmup, 1), max(total - s, 0) / max(total - warmup, 1)))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
