"""Images of samples: grids of tiles (guide --save-images, the built-ins' sample sheets) and one PNG per sample."""

from __future__ import annotations

import io
import math
from pathlib import Path
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


def sample_file_name(seed: int) -> str:
    """The PNG of the sample drawn from ``seed``: ``000042.png`` (EDM2's ``generate_images.py`` naming, flat so that
    FID tools such as torch-fidelity and clean-fid read the folder as it is)."""
    return f"{seed:06d}.png"


def foreign_samples(folder, seeds: range) -> list:
    """Per-sample PNGs under ``folder``'s arm folders (``ARM/NNNNNN.png``) of seeds outside ``seeds``: left there by
    another run, they would mix into what an FID tool reads as this run's samples."""
    return sorted(path for path in Path(folder).glob("*/*.png")
                  if path.stem.isdigit() and int(path.stem) not in seeds)


def sample_pngs(images, first_seed: int) -> list[tuple[str, bytes]]:
    """Images (N, C, H, W) in [-1, 1], sample i drawn from seed ``first_seed + i`` -> (file name, PNG bytes) per
    sample, at the images' own resolution (grey below 3 channels, else RGB of channels 0-2, as ``tiles``)."""
    files = []
    for i, picture in enumerate(tiles(images)):
        buffer = io.BytesIO()
        picture.save(buffer, format="PNG")
        files.append((sample_file_name(first_seed + i), buffer.getvalue()))
    return files
