"""Attention functions that expose what TinyBERT distils: pre-softmax scores or probabilities,
or the queries and keys (and values) they come from.

Hugging Face BERT exposes only post-softmax probabilities, while TinyBERT's reference code
distils the pre-softmax scores QK^T/sqrt(d_k). These functions compute eager attention and return
the requested kind as the layer's attention weights: maps (B, h, L, L), or for `qk` and `qkv`
the per-head queries, keys (and values) side by side (B, h, L, 2 or 3 d_k), which factored
caches store. Each is registered together with the eager
mask function: transformers passes *no* padding mask to an attention function it has no mask
function for, which would silently attend to padding. Teacher and student use the same ones.

A model whose attention modules compute their scores themselves (DeBERTa's disentangled
attention adds relative-position terms to QK^T) never calls that interface: its probabilities are
what it returns, and its scores are taken at its softmax, the one place they exist whole
(`SoftmaxInputs`). `use_attention` sets either kind of model.
"""

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch.overrides import TorchFunctionMode
from transformers import AttentionInterface, PreTrainedModel
from transformers.masking_utils import AttentionMaskInterface, eager_mask

from cache.runtime.kinds import AttentionKind, Capture, Factors


def _capturing_attention(capture: Capture):
    def attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
        if isinstance(capture, Factors):  # no map to hand over: the fused kernel computes the output
            output = torch.nn.functional.scaled_dot_product_attention(
                query, key, value, attn_mask=attention_mask, dropout_p=dropout if module.training else 0.0,
                scale=scaling)
            captured = (query, key) if capture == Factors.QK else (query, key, value)
            return output.transpose(1, 2).contiguous(), torch.cat(captured, dim=-1)
        scores = torch.matmul(query, key.transpose(2, 3)) * scaling  # (B, h, L, L)
        masked = scores if attention_mask is None else scores + attention_mask
        probs = masked.softmax(dim=-1)
        weights = torch.nn.functional.dropout(probs, p=dropout, training=module.training)
        output = torch.matmul(weights, value).transpose(1, 2).contiguous()  # (B, L, h, d_k)
        return output, scores if capture == AttentionKind.SCORES else probs

    return attention


def capture_implementation(capture: Capture) -> str:
    """Register (once) and return the attn_implementation name that captures `capture`."""
    name = f"tinybert_{capture}"
    if name not in AttentionInterface._global_mapping:
        AttentionInterface.register(name, _capturing_attention(capture))
        AttentionMaskInterface.register(name, eager_mask)
    return name


OWN_ATTENTION = ("DisentangledSelfAttention",)
"""Attention modules that compute their own scores (DeBERTa v2 and v3), by class name."""


def use_attention(model: PreTrainedModel, capture: Capture | None) -> None:
    """Make `model`'s attention weights (`output_attentions`) be `capture` (factors only where the
    model calls the attention interface); None: nothing captured, the fused kernel (what a model
    is saved and served with)."""
    own = [module for module in model.modules() if type(module).__name__ in OWN_ATTENTION]
    if not own:
        model.set_attn_implementation(capture_implementation(capture) if capture else "sdpa")
        return
    if isinstance(capture, Factors):
        raise ValueError(f"{type(own[0]).__name__} computes its own scores: no queries and keys give them")
    for module in own:
        if not hasattr(module, "captured"):
            module.forward = _capturing_forward(module, module.forward)  # type: ignore[method-assign]
        setattr(module, "captured", capture)  # noqa: B010 - read by the capturing forward


def _capturing_forward(module: torch.nn.Module, forward):
    """The module's own forward, its attention weights replaced by the scores it took the softmax
    of when scores are asked for. It fills masked cells with the dtype's lowest value, which
    squared overflows: they come out as 0 (never a target, as other families' padding cells)."""

    def capturing(*args, **kwargs):
        if module.captured != AttentionKind.SCORES:
            return forward(*args, **kwargs)
        with SoftmaxInputs() as inputs:
            context, probs = forward(*args, **kwargs)
        if probs is None or inputs.last is None:
            return context, None
        scores = inputs.last
        return context, scores.masked_fill(scores == torch.finfo(scores.dtype).min, 0.0)

    return capturing


class SoftmaxInputs(TorchFunctionMode):
    """Within its `with` block, keeps the input of the last softmax computed."""

    last: torch.Tensor | None = None

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func is torch.nn.functional.softmax:
            self.last = args[0]
        return func(*args, **(kwargs or {}))


@contextmanager
def plain_attention(model: PreTrainedModel) -> Iterator[None]:
    """Within the block, the model's config names a standard attention (a saved config must not
    name a capture function, which only this process has registered)."""
    current = model.config._attn_implementation
    if current.startswith("tinybert_"):
        model.set_attn_implementation("sdpa")
    try:
        yield
    finally:
        if current.startswith("tinybert_"):
            model.set_attn_implementation(current)
