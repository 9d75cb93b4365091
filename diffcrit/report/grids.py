"""Image grids: tiles of samples (guide --save-images, the built-ins' sample sheets)."""

from __future__ import annotations

import math
from typing import Sequence


def tiles(images, size: int | None = None) -> list:
    """Images (N, C, H, W) in [-1, 1] -> N PIL images: grey (channel 0) below 3 channels, else RGB
    (channels 0-2); ``size``: resized (nearest) to size x size."""
    from PIL import Image

    shown = images[:, :3] if images.shape[1] >= 3 else images[:, 0]
    pixels = ((shown.clamp(-1, 1) + 1) * 127.5).round().byte().numpy()
    pictures = [Image.fromarray(p.transpose(1, 2, 0) if p.ndim == 3 else p) for p in pixels]
    return [p.resize((size, size), Image.NEAREST) for p in pictures] if size else pictures


def image_grid(pictures: Sequence, cols: int, border: tuple[int, int, int, int] = (1, 1, 1, 1)):
    """Pictures of one size and mode in rows of ``cols`` (diffusers' ``make_image_grid``), each framed
    in white by ``border`` (left, top, right, bottom) pixels; cells past the last picture are white."""
    from diffusers.utils import make_image_grid
    from PIL import Image, ImageOps

    mode = pictures[0].mode
    cells = [ImageOps.expand(p, border, "white") for p in pictures]
    rows = math.ceil(len(cells) / cols)
    cells += [Image.new(mode, cells[0].size, "white")] * (rows * cols - len(cells))
    return make_image_grid(cells, rows, cols).convert(mode)
