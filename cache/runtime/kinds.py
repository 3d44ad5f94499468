"""What attention targets hold, by one name everywhere: flags, manifests, losses, capture."""

from enum import StrEnum


class AttentionKind(StrEnum):
    """TinyBERT's reference distils the pre-softmax scores QK^T / sqrt(d_k); Hugging Face models
    expose the post-softmax probabilities. Scores give probabilities (a softmax over real keys),
    never the other way round."""

    SCORES = "scores"
    PROBS = "probs"
