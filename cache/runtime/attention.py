"""Attention functions that expose what TinyBERT distils: pre-softmax scores or probabilities,
or the queries and keys (and values) they come from.

Hugging Face BERT exposes only post-softmax probabilities, while TinyBERT's reference code
distils the pre-softmax scores QK^T/sqrt(d_k). These functions compute eager attention and return
the requested kind as the layer's attention weights: maps (B, h, L, L), or for `qk` and `qkv`
the per-head queries, keys (and values) side by side (B, h, L, 2 or 3 d_k), which factored
caches store. Each is registered together with the eager
mask function: transformers passes *no* padding mask to an attention function it has no mask
function for, which would silently attend to padding. Teacher and student use the same ones.
"""

import torch
from transformers import AttentionInterface
from transformers.masking_utils import AttentionMaskInterface, eager_mask

from cache.runtime.kinds import AttentionKind

FACTORED = ("qk", "qkv")
"""Captures of queries and keys (and values) instead of maps (`cache.format.encoding.Factored`)."""


def _capturing_attention(capture: str):
    def attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
        if capture in FACTORED:  # no map to hand over: the fused kernel computes the output
            output = torch.nn.functional.scaled_dot_product_attention(
                query, key, value, attn_mask=attention_mask, dropout_p=dropout if module.training else 0.0,
                scale=scaling)
            captured = (query, key) if capture == "qk" else (query, key, value)
            return output.transpose(1, 2).contiguous(), torch.cat(captured, dim=-1)
        scores = torch.matmul(query, key.transpose(2, 3)) * scaling  # (B, h, L, L)
        masked = scores if attention_mask is None else scores + attention_mask
        probs = masked.softmax(dim=-1)
        weights = torch.nn.functional.dropout(probs, p=dropout, training=module.training)
        output = torch.matmul(weights, value).transpose(1, 2).contiguous()  # (B, L, h, d_k)
        return output, scores if capture == AttentionKind.SCORES else probs

    return attention


def capture_implementation(capture: str) -> str:
    """Register (once) and return the attn_implementation name that captures `capture`: an
    `AttentionKind`, or one of FACTORED."""
    name = f"tinybert_{capture}"
    if name not in AttentionInterface._global_mapping:
        AttentionInterface.register(name, _capturing_attention(capture))
        AttentionMaskInterface.register(name, eager_mask)
    return name
