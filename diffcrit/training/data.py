"""Dataset builders for the built-in checkpoints.

Every builder is a pure, deterministic function returning ``(images, labels)``:
images float32 NCHW with C = 1, values in [-1, 1]; labels int64 (N,), class ids 0..n_classes-1.
The null class used for classifier-free guidance (id n_classes) never appears in the data.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

DIGIT_CLASSES = [str(i) for i in range(10)]
TEXTURE_CLASSES = ["brick", "grass", "gravel"]


def digits_dataset(size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's bundled 8x8 digits (1797 images, values 0..16), bilinearly upsampled to
    ``size`` x ``size`` and scaled to [-1, 1]. Returns (N,1,size,size) float32, (N,) int64."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = torch.from_numpy(bunch.images.astype(np.float32)).unsqueeze(1) / 16.0  # [0, 1]
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    x = (x * 2.0 - 1.0).clamp(-1.0, 1.0)
    return x.contiguous(), torch.from_numpy(bunch.target.astype(np.int64))


def texture_images(downscale: int = 2) -> list[torch.Tensor]:
    """The scikit-image texture photos in TEXTURE_CLASSES order, grayscale, (H, W) float32 in
    [-1, 1], box-averaged by ``downscale`` (512 -> 256 px) so a 32 px crop holds a few texels."""
    import skimage.data

    out = []
    for name in TEXTURE_CLASSES:
        img = torch.from_numpy(getattr(skimage.data, name)().astype(np.float32))[None, None]
        img = F.avg_pool2d(img, downscale) if downscale > 1 else img
        out.append((img[0, 0] / 127.5 - 1.0).clamp(-1.0, 1.0))
    return out


def random_crops(
    image: torch.Tensor, n: int, size: int, rows: tuple[float, float], generator: torch.Generator
) -> torch.Tensor:
    """``n`` random ``size`` x ``size`` crops (n,1,size,size) whose rows lie wholly inside the
    fraction band ``rows`` of the image height, each flipped left-right / up-down at random."""
    h, w = image.shape
    top_lo, top_hi = int(rows[0] * h), int(rows[1] * h) - size
    if top_hi < top_lo:
        raise ValueError(f"row band {rows} is thinner than the crop size {size}")
    tops = torch.randint(top_lo, top_hi + 1, (n,), generator=generator)
    lefts = torch.randint(0, w - size + 1, (n,), generator=generator)
    flips = torch.randint(0, 2, (n, 2), generator=generator).bool()
    crops = []
    for top, left, (flip_w, flip_h) in zip(tops.tolist(), lefts.tolist(), flips.tolist(), strict=True):
        c = image[top : top + size, left : left + size]
        c = c.flip(1) if flip_w else c
        c = c.flip(0) if flip_h else c
        crops.append(c)
    return torch.stack(crops).unsqueeze(1).contiguous()


def textures_dataset(
    n_per_class: int = 2048,
    size: int = 32,
    rows: tuple[float, float] = (0.0, 1.0),
    seed: int = 0,
    downscale: int = 2,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Grayscale ``size`` x ``size`` crops of the bundled texture photos (brick, grass, gravel),
    class = texture. ``rows`` restricts crops to a horizontal band of each photo, so a
    classifier can be tested on pixels it never saw (train (0, 0.75), held out (0.75, 1)).
    Returns (3*n_per_class,1,size,size) float32 in [-1, 1], (3*n_per_class,) int64."""
    g = torch.Generator().manual_seed(seed)
    images = texture_images(downscale)
    xs = [random_crops(img, n_per_class, size, rows, g) for img in images]
    ys = [torch.full((n_per_class,), k, dtype=torch.int64) for k in range(len(images))]
    return torch.cat(xs), torch.cat(ys)


def holdout_split(n: int, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded random split of range(n): (train indices, held-out indices), held-out ~ fraction."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_out = int(round(n * fraction))
    return perm[n_out:].sort().values, perm[:n_out].sort().values
