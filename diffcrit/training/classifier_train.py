"""Train and score the small classifier shipped with a built-in checkpoint (diffcrit.models.classifiers).

Images are float32 NCHW in [-1, 1]; labels int64 class ids over the real classes (no null).
"""

from __future__ import annotations

import sys
import time
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..models.classifiers import build_classifier


def train_classifier(
    x: torch.Tensor,
    y: torch.Tensor,
    config: dict[str, Any],
    steps: int = 1500,
    batch: int = 64,
    lr: float = 2e-3,
    noise_std: float = 0.1,
    seed: int = 0,
    log_every: int = 250,
) -> nn.Module:
    """Fit ``build_classifier(config)`` with AdamW + cosine decay on (x, y). Each batch gets
    Gaussian noise of a per-image std drawn uniformly in [0, noise_std] (robustness to slightly
    imperfect generated samples). Seeded: same inputs and seed give the same weights."""
    torch.manual_seed(seed)
    model = build_classifier(config)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    g = torch.Generator().manual_seed(seed + 1)
    t0 = time.time()
    model.train()
    for step in range(1, steps + 1):
        idx = torch.randint(0, len(x), (batch,), generator=g)
        std = torch.rand(batch, 1, 1, 1, generator=g) * noise_std
        xb = x[idx] + std * torch.randn(x[idx].shape, generator=g)
        loss = F.cross_entropy(model(xb), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if log_every and step % log_every == 0:
            print(f"classifier step {step}/{steps} loss {loss.item():.4f} "
                  f"({time.time() - t0:.0f}s)", file=sys.stderr)
    return model.eval().requires_grad_(False)


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch: int = 512) -> torch.Tensor:
    """Predicted class ids (N,) int64 for images x (N, C, H, W) in [-1, 1]."""
    return torch.cat([model(x[i : i + batch]).argmax(dim=1) for i in range(0, len(x), batch)])


def accuracy(pred: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction of predictions equal to the labels."""
    return float((pred == y).float().mean())


def per_class_accuracy(pred: torch.Tensor, y: torch.Tensor, n_classes: int) -> list[float]:
    """Accuracy among the items of each true class (NaN for a class with no items)."""
    return [float((pred[y == k] == k).float().mean()) if (y == k).any() else float("nan")
            for k in range(n_classes)]
