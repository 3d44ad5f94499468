"""An independent teacher forward for tests: one example at a time (no padding, no mask), with
the default eager attention, and pre-softmax scores recomputed from the query/key projections."""

from pathlib import Path

import torch
from transformers import AutoConfig, BertForSequenceClassification, BertModel


def load_reference(path: Path):
    config = AutoConfig.from_pretrained(path)
    cls = BertForSequenceClassification if "BertForSequenceClassification" in config.architectures else BertModel
    return cls.from_pretrained(path, attn_implementation="eager").eval()


@torch.no_grad()
def reference_targets(model, input_ids: torch.Tensor, token_type_ids: torch.Tensor) -> dict:
    """Targets of one example: hidden [N+1 x (L, d)], probs and scores [N x (h, L, L)], logits,
    and each layer's query, key and value projections [N x (L, d)]."""
    bert = model.bert if hasattr(model, "bert") else model
    inputs = []  # each self-attention's input hidden states, to recompute its scores

    def keep_input(module, args, kwargs):
        inputs.append(args[0] if args else kwargs["hidden_states"])

    hooks = [layer.attention.self.register_forward_pre_hook(keep_input, with_kwargs=True)
             for layer in bert.encoder.layer]
    try:
        out = model(input_ids=input_ids[None], token_type_ids=token_type_ids[None],
                    output_hidden_states=True, output_attentions=True)
    finally:
        for hook in hooks:
            hook.remove()
    scores, vectors = [], {"query": [], "key": [], "value": []}
    for layer, x in zip(bert.encoder.layer, inputs, strict=True):
        attn = layer.attention.self
        heads, size = attn.num_attention_heads, attn.attention_head_size
        for name in vectors:
            vectors[name].append(getattr(attn, name)(x[0]))  # (L, d)
        q, k = (vectors[name][-1].view(-1, heads, size).transpose(0, 1) for name in ("query", "key"))  # (h, L, d_k)
        scores.append(q @ k.transpose(1, 2) / size**0.5)  # (h, L, L)
    return {
        "hidden": [h[0] for h in out.hidden_states],
        "probs": [a[0] for a in out.attentions],
        "scores": scores,
        "logits": out.logits[0] if hasattr(out, "logits") else None,
    } | vectors
