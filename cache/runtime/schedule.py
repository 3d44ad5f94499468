"""What every training loop here shares: the seeded start, and the linear warm-up then decay
schedule (the reference code's)."""

import random

import numpy as np
import torch


def linear_schedule(optimizer, total: int, warmup: int):
    """Linear warm-up over `warmup` steps, then linear decay to 0 at `total`."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / max(warmup, 1), max(total - s, 0) / max(total - warmup, 1)))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
