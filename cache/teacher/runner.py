"""Load a teacher of any family in `cache.data.families` and run it, capturing every TinyBERT
target in one forward pass (attention through `cache.runtime.attention`'s capture functions)."""

import hashlib
from dataclasses import dataclass

import torch
from transformers import AutoModel, AutoModelForSequenceClassification, PreTrainedModel

from cache.data.checkpoints import check_head, check_length, has_classifier, load_config, load_tokenizer
from cache.data.families import attention_windows, family_of
from cache.data.readers import Examples
from cache.format.manifest import TeacherRecord
from cache.runtime.attention import use_attention
from cache.runtime.kinds import AttentionKind


@dataclass(frozen=True)
class TeacherOutput:
    hidden: tuple[torch.Tensor, ...]  # N+1 x (B, L, d): embedding output, then each layer
    attention: tuple[torch.Tensor, ...]  # N x (B, h, L, L)
    logits: torch.Tensor | None  # (B, C)


def check_teacher(path: str, examples: Examples | None, max_seq_len: int) -> None:
    """Config, tokenizer and head checked before the weights load: a teacher whose head has other
    labels than the data (3 outputs on a 2-label task) would fill a cache with meaningless logits.
    `examples` is None for a corpus, whose teacher runs without its head."""
    config = load_config(path, "--teacher")
    load_tokenizer(path, "--teacher", config)
    check_length(config, max_seq_len, f"--teacher: {path}")
    if has_classifier(config) and examples is not None and examples.labels is not None:
        check_head(config, examples, f"--teacher: {path}")


def load_teacher(path: str, attention: AttentionKind, device: torch.device, head: bool = True):
    """Load the model from a local folder (or hub id); returns (model, info). With `head=False`,
    or for a model without a classifier, the bare encoder (no logits)."""
    config = load_config(path, "--teacher")
    family = family_of(config, f"--teacher: {path}")
    with_head = head and has_classifier(config)
    model: PreTrainedModel = (
        AutoModelForSequenceClassification.from_pretrained(path) if with_head
        else AutoModel.from_pretrained(path, **family.encoder_options()))
    use_attention(model, attention)
    model.eval().to(device)
    info = TeacherRecord(
        path=str(path), architecture=type(model).__name__, family=family.name, config=config.to_diff_dict(),
        weights_sha256=weights_sha256(model), num_layers=config.num_hidden_layers,
        num_heads=config.num_attention_heads, hidden_size=config.hidden_size,
        num_labels=(config.num_labels or 0) if with_head else 0, windows=attention_windows(config),
    )
    return model, info


def weights_sha256(model: torch.nn.Module) -> str:
    """sha256 over the state dict (names, dtypes, shapes, bytes): same weights, same hash."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


@torch.inference_mode()
def teacher_forward(model, input_ids: torch.Tensor, token_type_ids: torch.Tensor,
                    attention_mask: torch.Tensor, attentions: bool = True) -> TeacherOutput:
    """One forward pass returning every target (`attentions`: with the attention `use_attention`
    captures); autocast (bf16/fp16) on CUDA."""
    device = input_ids.device
    autocast_dtype = torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else torch.float16
    with torch.autocast(device.type, dtype=autocast_dtype, enabled=device.type == "cuda"):
        inputs = family_of(model.config, "--teacher").inputs(input_ids, token_type_ids, attention_mask)
        out = model(**inputs, output_hidden_states=True, output_attentions=attentions, return_dict=True)
    return TeacherOutput(tuple(out.hidden_states), tuple(out.attentions or ()), getattr(out, "logits", None))
