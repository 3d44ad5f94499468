"""Everything a training run resolves before its first step: the device and precision, the
student and its projections, the layer map and weights, the targets (a cache, streamed) and the
evaluation data. `Run` is what the recipe (`student.trainer`) and its parts share."""

from collections.abc import Iterator
from pathlib import Path
from typing import Protocol, cast

import numpy as np
import torch

from cache import Cache, RaggedExamples, open_cache
from cache.data.checkpoints import check_length, load_tokenizer
from cache.data.readers import evaluation_columns, load_examples
from cache.data.tasks import GENERIC_TASKS
from cache.format.location import Target
from cache.format.manifest import Manifest
from cache.runtime.device import resolve_device
from cache.runtime.distributed import ONE_PROCESS, Ranks
from cache.runtime.errors import UserError
from cache.runtime.kinds import Capture, Factors
from cache.runtime.log import RunLog
from cache.runtime.precision import resolve_precision
from cache.runtime.schedule import seed_everything
from student.config import (
    TrainConfig,
    check_compatibility,
    parse_student,
    regression_head,
    resolve_attention_kind,
    resolve_layer_weights,
    resolve_relations,
    resolve_stages,
)
from student.losses import head_map
from student.model import build_student, load_projections
from student.stream import Batch, BatchOrder, pad_batch, stream_batches

RANK_SEED_STRIDE = 1_000_003
"""Rank r draws its dropout masks from seed + r * stride: ranks must not drop the same units."""


class Run:
    """The resolved pieces of one training run (everything `train_student` sets up)."""

    model: torch.nn.Module
    """The module a step calls (`student.objective.distiller_of`), set by the recipe and held as
    long as the run: a DDP module freed after its process group is gone can hang its rank."""

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
        self.layer_map = config.resolved_layer_map(self.student.config.num_hidden_layers, self.teacher.num_layers)
        self.windows = {n: manifest.geometry.window(n) for n in self.layer_map}
        self.weights = resolve_layer_weights(config.layer_weights, len(self.layer_map), self.stages)
        self.relations = resolve_relations(config, manifest, self.student.config.hidden_size,
                                           self.student.config.num_hidden_layers) \
            if config.objective == "minilmv2" else None
        layered = config.objective == "tinybert"
        self.attention: Capture | None = Factors.QKV if self.relations else \
            resolve_attention_kind(config.attention_loss, manifest) if layered else None
        self.head_map = head_map(self.student.config.num_attention_heads, self.teacher.num_heads)
        check_compatibility(manifest, self.layer_map if layered else None, self.stages)
        if manifest.data.examples < ranks.world:
            raise UserError(f"--cache: {manifest.data.examples} examples cannot be shared by {ranks.world} ranks")
        # the intermediate stage trains (and the run saves) projections for TinyBERT's layer losses or
        # W_h for the pooled sentence vector; MiniLMv2's relations alone need none
        self.projected = layered or config.pooled_loss is not None
        layers = [self.relations.teacher_layer] if self.relations else [0, *self.layer_map] if layered else []
        if config.pooled_loss:
            check_embedding_layer(manifest, "--cache", config)
            layers = sorted({*layers, self.teacher.num_layers})
        self.targets = source if source is not None else \
            CachedTargets(config.cache, layers, config.storage_options, config.prefetch_blocks)
        self.eval_targets = None
        if config.eval_cache is not None:
            eval_targets = CachedTargets(config.eval_cache, layers, config.storage_options, config.prefetch_blocks)
            if self.relations:
                resolve_relations(config, eval_targets.manifest, self.student.config.hidden_size,
                                  self.student.config.num_hidden_layers, "--eval-cache")
            check_compatibility(eval_targets.manifest, self.layer_map if layered else None, self.stages,
                                "--eval-cache")
            if config.pooled_loss:
                check_embedding_layer(eval_targets.manifest, "--eval-cache", config)
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

    @property
    def num_labels(self) -> int:
        if self.teacher.num_labels:
            return self.teacher.num_labels
        names = self.manifest.data.label_names
        return 1 if self.regression else len(names) if names else 2


class TargetSource(Protocol):
    """What the trainer consumes: `CachedTargets` here, and the online baseline in bench/online.py,
    which computes the same batches with a live teacher."""

    manifest: Manifest
    block_starts: np.ndarray

    def load_tokenizer(self): ...

    def batches(self, order: BatchOrder, epoch: int, skip: int, workers: int, device: torch.device,
                attention: Capture | None, intermediate: bool) -> Iterator[Batch]: ...


class CachedTargets:
    """Distillation targets streamed from a teacher cache: what `train-student` always uses."""

    def __init__(self, path: Target, layers: list[int], storage_options: dict | None = None,
                 prefetch: int | None = None):
        self.cache: Cache = open_cache(path, layers=layers, storage_options=storage_options)
        self.prefetch = prefetch or self.cache.store.root.read_ahead
        # the prediction stage reads no layer
        self.logits_only: Cache = open_cache(path, layers=[], storage_options=storage_options)
        self.manifest = self.cache.manifest
        self.block_starts = self.cache.block_starts

    def load_tokenizer(self):
        return self.cache.load_tokenizer()

    def batches(self, order: BatchOrder, epoch: int, skip: int, workers: int, device: torch.device,
                attention: Capture | None, intermediate: bool) -> Iterator[Batch]:
        """The epoch's padded batches in order, after the first `skip`, attention as `attention`
        asks (`decode_batch`); the layers' targets only for the intermediate stage."""
        cache = self.cache if intermediate else self.logits_only
        embeddings = cache.embeddings.to(device) if cache.embeddings is not None else None
        for share in stream_batches(cache, order, epoch, skip, workers, self.prefetch):
            yield pad_batch(cast(RaggedExamples, share.examples), device, attention, share, embeddings)


def check_embedding_layer(manifest: Manifest, option: str, config: TrainConfig) -> None:
    """Sentence vectors are the teacher's last layer pooled: the cache must hold it."""
    last = manifest.teacher.num_layers
    if last not in manifest.layers:
        flag = "--embedding-loss" if config.embedding_loss else "--objective embedding"
        raise UserError(f"{flag}: {option} does not store the teacher's last layer {last} (it has "
                        f"{list(manifest.layers)}); dump it with --layers including {last}")


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
