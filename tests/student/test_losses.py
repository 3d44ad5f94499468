"""Each loss against a hand-written loop over examples, heads and real positions."""

import pytest
import torch

from cache.read.decode import probabilities_from_scores
from student.losses import attention_mse, head_map, hidden_mse, regression_mse, relation_kl, soft_cross_entropy

torch.manual_seed(0)
LENGTHS = [5, 1, 3]  # a single-token example included
B, H, L, D_S, D_T = 3, 2, 5, 4, 6


def mask_of(lengths):
    return torch.arange(max(lengths))[None] < torch.tensor(lengths)[:, None]


def reference_attention(student, teacher, lengths, window=None):
    """The mean over real pairs, the pairs farther apart than `window` counted as matched."""
    cells, total = 0, 0.0
    for b, n in enumerate(lengths):
        for h in range(student.shape[1]):
            for i in range(n):
                for j in range(n):
                    if window is None or abs(i - j) <= window:
                        total += (student[b, h, i, j] - teacher[b, h, i, j]).item() ** 2
                    cells += 1
    return total / cells


def test_attention_mse_counts_only_real_pairs():
    student, teacher = torch.randn(B, H, L, L), torch.randn(B, H, L, L)
    expected = reference_attention(student, teacher, LENGTHS)
    assert attention_mse(student, teacher, mask_of(LENGTHS)).item() == pytest.approx(expected, rel=1e-5)
    noisy = student.clone()
    noisy[1, :, 1:, :] = 1e3  # padding of the single-token example: must not count
    assert attention_mse(noisy, teacher, mask_of(LENGTHS)).item() == pytest.approx(expected, rel=1e-5)


def test_attention_mse_leaves_out_the_cells_outside_a_local_layers_window():
    student, teacher = torch.randn(B, H, L, L), torch.randn(B, H, L, L)
    expected = reference_attention(student, teacher, LENGTHS, window=1)
    assert attention_mse(student, teacher, mask_of(LENGTHS), window=1).item() == pytest.approx(expected, rel=1e-5)
    assert expected < reference_attention(student, teacher, LENGTHS)


def test_head_mapping_against_a_hand_computation():
    lengths = [4, 2]
    mask = mask_of(lengths)
    student2, student3 = torch.randn(2, 2, 4, 4), torch.randn(2, 3, 4, 4)
    teacher = torch.randn(2, 4, 4, 4)
    # grouped: student head 0 learns from teacher heads 0, 1; head 1 from heads 2, 3
    grouped = [[sum(teacher[b, 2 * h + g, i, j].item() for g in range(2)) / 2 for h in range(2)
                for i in range(4) for j in range(4)] for b in range(2)]
    total, cells = 0.0, 0
    for b, n in enumerate(lengths):
        for h in range(2):
            for i in range(n):
                for j in range(n):
                    total += (student2[b, h, i, j].item() - grouped[b][h * 16 + i * 4 + j]) ** 2
                    cells += 1
    assert head_map(2, 4) == "grouped"
    assert attention_mse(student2, teacher, mask).item() == pytest.approx(total / cells, rel=1e-5)
    # 4 teacher heads, 3 student heads: the mean map on both sides
    total, cells = 0.0, 0
    for b, n in enumerate(lengths):
        for i in range(n):
            for j in range(n):
                s = sum(student3[b, h, i, j].item() for h in range(3)) / 3
                t = sum(teacher[b, h, i, j].item() for h in range(4)) / 4
                total, cells = total + (s - t) ** 2, cells + 1
    assert head_map(3, 4) == "mean" and head_map(8, 4) == "mean" and head_map(4, 4) == "one-to-one"
    assert attention_mse(student3, teacher, mask).item() == pytest.approx(total / cells, rel=1e-5)


def test_hidden_mse_projects_and_masks():
    student, teacher = torch.randn(B, L, D_S), torch.randn(B, L, D_T)
    projection = torch.nn.Linear(D_S, D_T)
    total, count = 0.0, 0
    for b, n in enumerate(LENGTHS):
        for t in range(n):
            total += ((student[b, t] @ projection.weight.T + projection.bias - teacher[b, t]) ** 2).sum().item()
            count += D_T
    got = hidden_mse(student, teacher, mask_of(LENGTHS), projection)
    assert got.item() == pytest.approx(total / count, rel=1e-5)
    got.backward()
    assert projection.weight.grad.abs().sum() > 0  # W is learned through the loss


def test_single_token_batch():
    s, t = torch.randn(1, H, 1, 1), torch.randn(1, H, 1, 1)
    assert attention_mse(s, t, mask_of([1])).item() == pytest.approx(((s - t) ** 2).mean().item(), rel=1e-6)


def test_soft_cross_entropy_and_temperature():
    student, teacher = torch.randn(4, 3), torch.randn(4, 3)
    for t in (1.0, 2.0):
        expected = 0.0
        for b in range(4):
            p = torch.exp(teacher[b] / t) / torch.exp(teacher[b] / t).sum()
            log_q = student[b] / t - torch.log(torch.exp(student[b] / t).sum())
            expected -= (p * log_q).sum().item() / 4
        assert soft_cross_entropy(student, teacher, t).item() == pytest.approx(expected, rel=1e-5)


def test_regression_mse():
    s, t = torch.tensor([[1.0], [3.0]]), torch.tensor([[2.0], [0.0]])
    assert regression_mse(s, t).item() == pytest.approx((1 + 9) / 2)


def test_probabilities_from_scores_softmax_over_real_keys():
    scores, mask = torch.randn(B, H, L, L), mask_of(LENGTHS)
    probs = probabilities_from_scores(scores, mask)
    for b, n in enumerate(LENGTHS):
        torch.testing.assert_close(probs[b, :, :n, :n], scores[b, :, :n, :n].softmax(-1))
        assert probs[b, :, :, n:].abs().sum() == 0 and probs[b, :, n:, :].abs().sum() == 0


def test_probabilities_from_scores_of_a_local_layer_softmax_within_its_window():
    scores, mask = torch.randn(B, H, L, L), mask_of(LENGTHS)
    probs = probabilities_from_scores(scores, mask, window=1)
    for b, n in enumerate(LENGTHS):
        for i in range(n):
            keys = list(range(max(0, i - 1), min(n, i + 2)))
            torch.testing.assert_close(probs[b, :, i, keys], scores[b, :, i, keys].softmax(-1))
            assert probs[b, :, i].sum(-1).sub(1).abs().max() < 1e-6


def by_hand_layer(captured, r):
    """One example's r-th of queries, keys, values (h, L, 3 d_k) as (L, h d_k): heads side by side."""
    d_k = captured.shape[-1] // 3
    return torch.cat([captured[head, :, r * d_k:(r + 1) * d_k] for head in range(captured.shape[0])], dim=-1)


def reference_relations(student, teacher, lengths, heads):
    total = 0.0
    for b, n in enumerate(lengths):
        for r in range(3):
            s, t = by_hand_layer(student[b], r)[:n], by_hand_layer(teacher[b], r)[:n]
            ds, dt = s.shape[1] // heads, t.shape[1] // heads
            for a in range(heads):
                sa, ta = s[:, a * ds:(a + 1) * ds], t[:, a * dt:(a + 1) * dt]
                for i in range(n):
                    ours = torch.softmax(sa[i] @ sa.T / ds**0.5, dim=0)
                    theirs = torch.softmax(ta[i] @ ta.T / dt**0.5, dim=0)
                    total += (theirs * (theirs.log() - ours.log())).sum().item()
    return total / (sum(lengths) * heads)


def test_relation_kl_against_a_loop_over_examples_heads_and_query_rows():
    """A student of another width and head count (2 x 6) than the teacher (4 x 6), 3 relation
    heads, a one-token example, padding that must not count."""
    student, teacher = torch.randn(B, 2, L, 18), torch.randn(B, 4, L, 18)
    expected = reference_relations(student, teacher, LENGTHS, heads=3)
    got = relation_kl(student, teacher, mask_of(LENGTHS), heads=3)
    assert got.item() == pytest.approx(expected, rel=1e-5)
    noisy = student.clone()
    noisy[1, :, 1:] = 1e3  # padding of the single-token example
    assert relation_kl(noisy, teacher, mask_of(LENGTHS), heads=3).item() == pytest.approx(expected, rel=1e-5)
    same = teacher[:, :2]
    assert relation_kl(same, same, mask_of(LENGTHS), heads=3).item() == pytest.approx(0, abs=1e-6)
    noisy.requires_grad_(True)
    relation_kl(noisy, teacher, mask_of(LENGTHS), heads=3).backward()
    assert torch.isfinite(noisy.grad).all() and noisy.grad[1, :, 1:].abs().sum() == 0
