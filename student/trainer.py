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

The parts it wires together: `student.setup` (the resolved `Run`), `student.objective` (the loss
terms), `student.checkpoints` (saving and resuming), `cache.runtime.log` (metrics.jsonl).
"""

import time
from dataclasses import asdict

import torch
from tqdm import tqdm

from cache.data.evaluate import evaluate, metric_for
from cache.data.metrics import MAIN_METRIC
from cache.runtime.attention import use_attention
from cache.runtime.device import resolve_device
from cache.runtime.distributed import current_ranks, process_group
from cache.runtime.precision import autocast
from cache.runtime.records import write_record
from cache.runtime.schedule import linear_schedule, seed_everything
from student.checkpoints import RunState, load_checkpoint, restore, save_checkpoint, save_student
from student.config import RUN_RECORD, Stage, TrainConfig
from student.objective import check_finite, distiller_of, held_out_losses, over_ranks, total
from student.setup import RANK_SEED_STRIDE, Run, TargetSource
from student.stream import Batch, BatchOrder


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
        run.model = distiller_of(run)  # held by the run, as long as the run: never freed after the group
        checkpoint = load_checkpoint(run) if config.resume else None
        if ranks.main:
            _write_run_files(run, command)
        state = RunState.saved(checkpoint["state"]) if checkpoint else RunState()
        try:
            for index, stage in enumerate(run.stages):
                if index < state.stage:
                    continue
                _train_stage(run, stage, index, state, progress and ranks.main, checkpoint)
                state = RunState(stage=index + 1, best=state.best, history=state.history)
        finally:
            run.log.close()
        if ranks.main:
            save_student(run, config.out / "last")
    return state.history[-1]["eval"] if state.history else {}


def _write_run_files(run: Run, command: str) -> None:
    out = run.config.out
    out.mkdir(parents=True, exist_ok=True)
    write_record(out / RUN_RECORD, run.config, command, layer_map_resolved=run.layer_map,
                 layer_weights_resolved=run.weights, attention_kind=run.attention, head_map=run.head_map,
                 relations_resolved=asdict(run.relations) if run.relations else None,
                 projections_resolved=run.projections.sharing,
                 stages=[asdict(s) for s in run.stages], teacher_weights_sha256=run.teacher.weights_sha256,
                 num_labels=run.num_labels, workers_resolved=run.workers, precision_resolved=run.precision,
                 ranks=run.ranks.world, global_batch_size=run.config.batch_size * run.ranks.world)
    with open(out / "command.txt", "a") as f:  # every command that ran in this folder (a resume appends)
        f.write(command + "\n")


def _train_stage(run: Run, stage: Stage, index: int, state: RunState, progress: bool,
                 checkpoint: dict | None) -> None:
    config = run.config
    order = BatchOrder(run.targets.block_starts, config.batch_size * run.ranks.world, config.window_blocks,
                     config.seed + index, run.ranks)
    steps = sum(order.steps_per_epoch(e) for e in range(stage.epochs))
    steps = min(steps, config.max_steps) if config.max_steps else steps
    intermediate = stage.intermediate
    use_attention(run.student, run.attention if intermediate else None)
    projected = intermediate and run.projected
    params = [*run.student.parameters(), *(run.projections.parameters() if projected else [])]
    optimizer = torch.optim.AdamW(params, lr=stage.lr, weight_decay=config.weight_decay,
                                  fused=run.device.type == "cuda")
    scheduler = linear_schedule(optimizer, steps, int(config.warmup * steps))
    if checkpoint is not None and state.step:  # resuming inside this stage
        restore(checkpoint, optimizer, scheduler, run.ranks)
    else:
        seed_everything(config.seed + index + run.ranks.rank * RANK_SEED_STRIDE)
    bar = tqdm(total=steps, initial=state.step, desc=stage.name, unit="step", disable=not progress, dynamic_ncols=True)
    started, seen = time.perf_counter(), 0
    run.student.train()
    while state.step < steps and state.epoch < stage.epochs:
        for batch in run.targets.batches(order, state.epoch, state.batches_done, run.workers, run.device, run.attention,
                                         intermediate):
            parts = _train_step(run, batch, intermediate, optimizer, scheduler)
            state.batches_done, state.step, seen = state.batches_done + 1, state.step + 1, seen + batch.totals.examples
            bar.update(1)
            saving = state.step % config.save_every == 0
            evaluating = config.eval_every is not None and state.step % config.eval_every == 0
            if saving or evaluating or state.step % config.log_every == 0 or state.step == steps:  # syncs a GPU
                rate, values = seen / (time.perf_counter() - started), over_ranks(run.ranks, parts)
                check_finite(values, stage.name, state.step)  # before anything is saved
                bar.set_postfix({k: f"{v:.4g}" for k, v in values.items()} | {"ex/s": f"{rate:.0f}"}, refresh=False)
                run.log.write({"stage": stage.name, "epoch": state.epoch, "step": state.step, **values,
                               "lr": scheduler.get_last_lr()[0], "examples_per_s": rate})
            if evaluating:
                _evaluate(run, stage, state)
            if saving:
                save_checkpoint(run, optimizer, scheduler, state, index)
            if state.step >= steps:
                break
        else:
            state.epoch, state.batches_done = state.epoch + 1, 0
    bar.close()
    if not (config.eval_every and state.step % config.eval_every == 0):  # else just evaluated
        _evaluate(run, stage, state)
    done = RunState(stage=index + 1, best=state.best, history=state.history)
    save_checkpoint(run, optimizer, scheduler, done, index + 1)


def _train_step(run: Run, batch: Batch, intermediate: bool, optimizer, scheduler) -> dict[str, torch.Tensor]:
    """One optimiser step; returns the detached loss parts (this rank's share of the global
    batch's), left on the device so a GPU never waits."""
    with autocast(run.precision, run.device):
        parts = run.model(batch, intermediate)
    loss = total(parts.values())
    (loss * run.ranks.world).backward()  # DDP averages the ranks' gradients; the shares' losses add up
    torch.nn.utils.clip_grad_norm_([p for group in optimizer.param_groups for p in group["params"]],
                                   run.config.max_grad_norm)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return {"loss": loss.detach()} | {name: value.detach() for name, value in parts.items()}


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


def _record_evaluation(run: Run, stage: Stage, state: RunState, metrics: dict, score: float | None) -> None:
    """Log an evaluation; a `score` (higher is better) that beats the best so far saves `best/`."""
    entry = {"stage": stage.name, "step": state.step, "eval": metrics}
    state.history.append(entry)
    run.log.write(entry)
    if score is None:
        return
    if state.best is None or score > state.best:
        state.best = score
        save_student(run, run.config.out / "best")


