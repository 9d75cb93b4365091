"""Dataset builders for the built-in checkpoints: the builders live in the runtime
(``diffcrit.models.datasets``, which ``predict --data builtin:NAME`` reads); the train/held-out split is
training's own.
"""

from __future__ import annotations

import torch

from ..models.datasets import (DIGIT_CLASSES, TEXTURE_CLASSES, digits_dataset, random_crops, texture_images,  # noqa: F401
                               textures_dataset)


def holdout_split(n: int, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded random split of range(n): (train indices, held-out indices), held-out ~ fraction."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_out = int(round(n * fraction))
    return perm[n_out:].sort().values, perm[:n_out].sort().values
