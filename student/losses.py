"""TinyBERT's distillation losses as small pure functions.

Every MSE averages over *real* positions only (the mask), where the reference implementation
averages over padded tensors with padding zeroed. Padding adds zeros to its numerator and
positions to its denominator, so its loss scale depends on how a batch happens to be padded; ours
does not. The price is a different loss scale from the reference code (documented in the README).

Each mean can divide by a count given from outside (`pairs`, `tokens`, `examples`) instead of
this batch's own: under DDP a rank's share divides by its global batch's, so that the ranks'
losses add up to the one-process batch's.
"""

import torch
import torch.nn.functional as F

from cache.read.decode import attended


def attention_mse(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor,
                  pairs: int | None = None, window: int | None = None) -> torch.Tensor:
    """(1/h) sum_i MSE(A_i^S, A_i^T) over real (query, key) pairs.

    student, teacher: (B, h, L, L) attention scores or probabilities; mask: (B, L) bool, True on
    real tokens. Heads weigh equally, so this is the mean over every real cell of every head. Maps
    with different head counts are first matched by `match_heads`. pairs: sum of L_i^2 to divide
    by (default: this batch's). window: the teacher layer's attention window (a ModernBERT's
    local layer): the cells outside it were never attended to and are no targets. They add
    nothing, and the mean stays over all real pairs, so that one count (the batch totals ranks
    share) serves every layer.
    """
    student, teacher = match_heads(student, teacher)
    real = attended(mask).to(student.dtype)  # (B, 1, L, L)
    squared = (student - teacher).square() * (real if window is None else attended(mask, window).to(student.dtype))
    cells = (real.sum() if pairs is None else torch.tensor(float(pairs))) * student.shape[1]
    return squared.sum() / cells.clamp(min=1)


def head_map(student_heads: int, teacher_heads: int) -> str:
    """How attention maps are compared when the head counts differ: `one-to-one` when equal;
    `grouped` when the teacher has k times the student's heads (student head i against the mean of
    teacher heads i*k .. i*k+k-1, consecutive as BERT lays them out); `mean` otherwise (the mean
    map over all heads on each side)."""
    if student_heads == teacher_heads:
        return "one-to-one"
    return "grouped" if teacher_heads % student_heads == 0 else "mean"


def match_heads(student: torch.Tensor, teacher: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Student and teacher maps (B, h, L, L) brought to one head count by `head_map`."""
    heads = student.shape[1]
    kind = head_map(heads, teacher.shape[1])
    if kind == "grouped":
        return student, teacher.unflatten(1, (heads, -1)).mean(2)
    if kind == "mean":
        return student.mean(1, keepdim=True), teacher.mean(1, keepdim=True)
    return student, teacher


def hidden_mse(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor,
               projection: torch.nn.Module, tokens: int | None = None) -> torch.Tensor:
    """MSE(H^S W, H^T) over real tokens; with W = W_h for hidden states, W_e for embeddings.

    student: (B, L, d') student width; teacher: (B, L, d) teacher width; mask: (B, L) bool;
    projection: d' -> d; tokens: real tokens to divide by (default: this batch's).
    """
    weights = mask.to(student.dtype)[..., None]  # (B, L, 1)
    squared = (projection(student) - teacher).square() * weights
    count = weights.sum() if tokens is None else torch.tensor(float(tokens))
    return squared.sum() / (count * teacher.shape[-1]).clamp(min=1)


def soft_cross_entropy(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                       temperature: float = 1.0, examples: int | None = None) -> torch.Tensor:
    """-sum softmax(z^T / t) * log_softmax(z^S / t), averaged over the batch (or over `examples`).
    Logits: (B, C)."""
    targets = F.softmax(teacher_logits / temperature, dim=-1)
    losses = -(targets * F.log_softmax(student_logits / temperature, dim=-1)).sum(-1)
    return losses.sum() / (len(losses) if examples is None else examples)


def regression_mse(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                   examples: int | None = None) -> torch.Tensor:
    """MSE against the teacher's prediction for regression tasks (STS-B), averaged over the batch
    (or over `examples`). Logits: (B, 1)."""
    return F.mse_loss(student_logits, teacher_logits, reduction="sum") / (
        len(student_logits) if examples is None else examples)


def relation_kl(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor, heads: int,
                tokens: int | None = None) -> torch.Tensor:
    """MiniLMv2's self-attention relation loss of one layer pair: for each of Q-Q, K-K and V-V, the
    KL divergence of the student's relation rows from the teacher's, averaged over the relation
    heads and the real query tokens; the sum of the three.

    student, teacher: (B, h, L, 3 d_k) a layer's queries, keys and values per head, side by side
    (`Factors.QKV`; the two may differ in heads and width); mask: (B, L) bool; heads: relation
    heads A, which divide both widths; tokens: real tokens to divide by (default: this batch's).
    """
    keys = mask[:, None, None, :]  # (B, 1, 1, L)
    queries = mask[:, None, :].to(student.dtype)  # (B, 1, L)
    total = student.new_zeros(())
    for r in range(3):
        theirs, ours = (log_relations(vectors(x, r), heads, keys) for x in (teacher, student))
        kl = (theirs.exp() * (theirs - ours).masked_fill(~keys, 0.0)).sum(-1)  # (B, A, L); exp(-inf) = 0
        total = total + (kl * queries).sum()
    count = mask.sum() if tokens is None else torch.tensor(float(tokens))
    return total / (count * heads).clamp(min=1)


def vectors(captured: torch.Tensor, r: int) -> torch.Tensor:
    """The r-th of the queries, keys and values (B, h, L, 3 d_k) as the layer's (B, L, h d_k)."""
    b, h, length, width = captured.shape
    part = captured[..., r * width // 3:(r + 1) * width // 3]
    return part.transpose(1, 2).reshape(b, length, h * width // 3)


def log_relations(x: torch.Tensor, heads: int, keys: torch.Tensor) -> torch.Tensor:
    """log softmax(X_a X_a^T / sqrt(d / A)) over real keys for each relation head a: (B, A, L, L),
    -inf on padding keys. x: (B, L, d)."""
    b, length, width = x.shape
    split = x.float().view(b, length, heads, width // heads).transpose(1, 2)  # (B, A, L, d/A)
    scores = split @ split.transpose(2, 3) * (width // heads) ** -0.5
    return scores.masked_fill(~keys, float("-inf")).log_softmax(dim=-1)


def pooled_embedding_loss(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor,
                          projection: torch.nn.Module, kind: str, examples: int | None = None) -> torch.Tensor:
    """The student's sentence vector against the teacher's: each the mean of its last layer over
    the example's real tokens, the student's through W_h (after pooling: pooling is linear, so
    this is the pooled projection). `kind` mse: the mean squared difference per dimension;
    cosine: 1 - cos. Averaged over the batch (or over `examples`).

    student: (B, L, d'); teacher: (B, L, d); mask: (B, L) bool; projection: d' -> d.
    """
    weights = mask.to(student.dtype)[..., None]
    counts = weights.sum(1).clamp(min=1)
    ours = projection((student * weights).sum(1) / counts)
    theirs = (teacher.to(student.dtype) * weights).sum(1) / counts
    losses = (ours - theirs).square().mean(-1) if kind == "mse" else 1 - F.cosine_similarity(ours, theirs, dim=-1)
    return losses.sum() / (len(losses) if examples is None else examples)
