"""What attention targets hold, by one name everywhere: flags, manifests, losses, capture."""

from enum import StrEnum


class AttentionKind(StrEnum):
    """TinyBERT's reference distils the pre-softmax scores QK^T / sqrt(d_k); Hugging Face models
    expose the post-softmax probabilities. Scores give probabilities (a softmax over real keys),
    never the other way round."""

    SCORES = "scores"
    PROBS = "probs"


class Factors(StrEnum):
    """What a factored capture holds instead of maps: the queries and keys (and values) attention
    is computed from, per head, side by side (B, h, L, 2 or 3 d_k)."""

    QK = "qk"
    QKV = "qkv"


Capture = AttentionKind | Factors
"""What a model's attention weights are made to be, and what decoding hands a loss."""
