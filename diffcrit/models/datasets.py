"""Data sets for ``predict``: an image folder, a .npy/.npz array, or the data of a built-in.

Contract: ``open_data(spec)`` checks what it can cheaply (the path exists, the first image or the
array header) and returns a ``DataSource`` that streams float32 batches (b, C, H, W) in the VE
frame's clean space x0. Scale: image files map 0..255 (0..65535 for 16-bit) onto [-1, 1], the range
diffusion models are trained on; arrays are used as they are (save them in the model's scale). A
file that cannot be read, or whose size differs from the first, is a ``UserError`` naming it,
raised when the stream reaches it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from .builtins import CHECKPOINTS
from ..config import check_seeds
from ..errors import UserError
from ..resources import check_fits

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
NPZ_KEYS = ("images", "x", "data")  # tried in this order when an .npz holds several arrays
GAUSSIAN_DRAWS = 4096
DRAW_BYTES = 48  # per value while drawing: float64 noise, its complex128 FFT, the phases, the result


@dataclass
class DataSource:
    """A data set streamed in batches: ``read(lo, hi)`` -> (hi - lo, C, H, W) float32."""

    spec: str
    kind: str  # "folder", "array" or "builtin"
    shape: tuple[int, int, int]
    count: int
    read: Callable[[int, int], torch.Tensor] = field(repr=False)
    notes: dict[str, Any] = field(default_factory=dict)

    def batches(self, size: int) -> Iterator[torch.Tensor]:
        for lo in range(0, self.count, size):
            yield self.read(lo, min(lo + size, self.count))

    def describe(self) -> dict:
        return {"source": self.spec, "kind": self.kind, "count": self.count, "shape": list(self.shape), **self.notes}


def open_data(spec: str, *, draws: int | None = None, seed: int | None = None) -> DataSource:
    """``builtin:NAME[?k=v]``, a folder of images, or a .npy / .npz array (N, C, H, W) or (N, H, W).

    ``draws`` and ``seed`` set the random-phase draws of ``builtin:gaussian`` (``gaussian_draws``; default
    ``GAUSSIAN_DRAWS`` and 0); any other data refuses them.
    """
    from .builtins import PREFIX

    if not spec.startswith(PREFIX + "gaussian") and (draws is not None or seed is not None):
        name = "draws" if draws is not None else "seed"
        raise UserError(f"`{name}` sets the random draws of builtin:gaussian only; `data` {spec} does not use it",
                        f"drop `{name}`", option=name)
    draws, seed = (GAUSSIAN_DRAWS if draws is None else draws), (0 if seed is None else seed)
    if spec.startswith(PREFIX):
        return _builtin(spec, draws, seed)
    path = Path(spec).expanduser()
    if not path.exists():
        raise UserError(f"`data` {spec}: no such file or folder",
                        "give an image folder, a .npy/.npz file or builtin:NAME", option="data")
    if path.is_dir():
        return _folder(path)
    if path.suffix.lower() in (".npy", ".npz"):
        return _array_source(str(path), "array", _load_array(path))
    raise UserError(f"`data` {spec}: not a folder, .npy or .npz file",
                    "give an image folder, a .npy/.npz file or builtin:NAME", option="data")


# --- arrays -----------------------------------------------------------------------------------

def _load_array(path: Path) -> np.ndarray:
    try:
        if path.suffix.lower() == ".npy":
            return np.load(path, mmap_mode="r", allow_pickle=False)
        with np.load(path, allow_pickle=False) as archive:
            keys = list(archive.keys())
            key = keys[0] if len(keys) == 1 else next((k for k in NPZ_KEYS if k in keys), None)
            if key is None:
                raise UserError(f"`data` {path}: the .npz holds {', '.join(keys) or 'no arrays'}",
                                f"save one array, or name it one of {', '.join(NPZ_KEYS)}", option="data")
            return archive[key]
    except (OSError, ValueError, EOFError) as err:
        raise UserError(f"`data` {path}: cannot read the array ({err})", option="data") from None


def _array_source(spec: str, kind: str, array: np.ndarray | torch.Tensor, notes: dict | None = None) -> DataSource:
    """(N, C, H, W) or (N, H, W) numeric array -> DataSource (memory-mapped arrays stay on disk)."""
    if array.ndim == 3:
        array = array[:, None]
    if array.ndim != 4 or min(array.shape) < 1:
        raise UserError(f"`data` {spec}: array of shape {tuple(array.shape)}", "expected (N, C, H, W) or (N, H, W)",
                        option="data")
    if isinstance(array, np.ndarray) and not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise UserError(f"`data` {spec}: array of dtype {array.dtype}", "expected numbers", option="data")
    if isinstance(array, np.ndarray) and np.iscomplexobj(array):
        raise UserError(f"`data` {spec}: array of complex dtype {array.dtype}",
                        "expected real numbers: save the real part (or the magnitude) yourself", option="data")

    def read(lo: int, hi: int) -> torch.Tensor:
        batch = torch.as_tensor(np.asarray(array[lo:hi], dtype=np.float32))
        if not torch.isfinite(batch).all():
            raise UserError(f"`data` {spec}: NaN or Inf in rows {lo}..{hi - 1}", option="data")
        return batch

    return DataSource(spec, kind, tuple(int(v) for v in array.shape[1:]), int(array.shape[0]), read, notes or {})


# --- image folders ----------------------------------------------------------------------------

def read_image(path: Path) -> np.ndarray:
    """One image file -> (C, H, W) float32 in [-1, 1]: grayscale C = 1, colour C = 3 (alpha dropped)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            if image.mode in ("I;16", "I;16B", "I;16L", "I"):
                pixels, top = np.asarray(image, dtype=np.float64), 65535.0
            elif image.mode in ("1", "L", "LA", "F"):
                pixels, top = np.asarray(image.convert("L"), dtype=np.float64), 255.0
            else:
                pixels, top = np.asarray(image.convert("RGB"), dtype=np.float64), 255.0
    except (OSError, UnidentifiedImageError, ValueError) as err:
        raise UserError(f"cannot read image {path}: {err}", "fix or remove the file") from None
    pixels = pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)
    return (pixels / top * 2 - 1).astype(np.float32)


def _folder(path: Path) -> DataSource:
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise UserError(f"`data` {path}: no image files ({', '.join(IMAGE_SUFFIXES)})", option="data")
    shape = read_image(files[0]).shape

    def read(lo: int, hi: int) -> torch.Tensor:
        images = []
        for file in files[lo:hi]:
            image = read_image(file)
            if image.shape != shape:
                raise UserError(f"image {file} is {_dims(image.shape)}, "
                                f"the first image {files[0].name} is {_dims(shape)}",
                                "all images must share one size and channel count")
            images.append(image)
        return torch.from_numpy(np.stack(images))

    return DataSource(str(path), "folder", tuple(shape), len(files), read, {"scale": "pixel values 0..max -> [-1, 1]"})


def _dims(shape: tuple[int, ...]) -> str:
    return f"{shape[1]}x{shape[2]} with {shape[0]} channel(s)"


# --- built-ins --------------------------------------------------------------------------------

def gaussian_draws(model: Any, count: int, seed: int) -> torch.Tensor:
    """Random-phase draws of a ``GaussianField`` (count, C, H, W): F(k) = sqrt(P(k)) e^{i phi(k)}.

    Each draw has the field's exact amplitudes and uniformly random phases (the phases of seeded
    white noise, so the draw is real), so its covariance is the model's and its empirical spectrum
    |F(k)|^2 equals P(k) draw by draw: predictions from these draws reproduce the exact theory up
    to the O(1/count) subtraction of the sample mean.
    """
    generator = torch.Generator().manual_seed(seed)
    noise = torch.fft.fft2(torch.randn(count, *model.shape, generator=generator, dtype=torch.float64))
    phase = noise / noise.abs().clamp_min(1e-300)
    numel = model.shape[-1] * model.shape[-2]
    return torch.fft.ifft2(phase * (model.spectrum * numel).sqrt()).real.float()


def _builtin(spec: str, draws: int, seed: int) -> DataSource:
    from . import builtins

    name = spec[len(builtins.PREFIX):].partition("?")[0]
    try:
        entry, options = builtins.parse_spec(spec)
    except UserError:
        if "?" in spec or name not in TRAINING_DATA:  # trained built-ins take no options
            raise
        entry, options = None, {}
    if entry is None or entry.factory is None:
        return _training_data(spec, name)
    model = entry.factory(**options)
    if entry.name == "patch":
        return _array_source(spec, "builtin", model.images,
                             {"data": "the patch model's training set", **model.describe()})
    if entry.name == "mixture":
        return _array_source(spec, "builtin", torch.stack([model.mean, -model.mean]),
                             {"data": "the two points +m and -m (equal weights)", **model.describe()})
    if entry.name == "gaussian":
        if draws < 2:
            raise UserError(f"`draws` must be >= 2, got {draws}", option="draws")
        check_seeds(seed, 1)
        check_fits(draws * math.prod(model.shape) * DRAW_BYTES, f"`draws` {draws}", "give fewer draws", option="draws")
        return _array_source(spec, "builtin", gaussian_draws(model, draws, seed),
                             {"data": f"{draws} random-phase draws (exact amplitudes sqrt(P(k)), seed {seed})",
                              "draws": draws, "seed": seed, **model.describe()})
    raise UserError(f"builtin:{entry.name} has no data set for predict",
                    "use patch, mixture, gaussian or a trained built-in")


def _training_data(spec: str, name: str) -> DataSource:
    """The training data of a trained built-in checkpoint, rebuilt from its recipe (``TRAINING_DATA``)."""
    recipe = TRAINING_DATA.get(name)
    if recipe is None:
        raise UserError(f"builtin:{name} has no training data recipe")
    try:
        images, _ = build_dataset(recipe)
    except ImportError as err:
        raise UserError(f"builtin:{name}: building its training data needs {err.name or err}",
                        "pip install 'diffcrit[train]'") from None
    return _array_source(spec, "builtin", images, {"data": recipe.get("source", "training data"),
                                                   "builder": recipe["builder"]})


# --- the training sets of the built-in checkpoints ---------------------------------------------
# Every builder is a pure, deterministic function returning ``(images, labels)``: images float32
# NCHW with C = 1, values in [-1, 1]; labels int64 (N,), class ids 0..n_classes-1. The null class
# used for classifier-free guidance (id n_classes) never appears in the data. ``diffcrit.training``
# trains on them; ``predict --data builtin:NAME`` reads them.

DIGIT_CLASSES = CHECKPOINTS["digits"]["classes"]
TEXTURE_CLASSES = CHECKPOINTS["textures"]["classes"]

# name -> the builder, its keyword arguments and where the data come from (train_config.json "data").
TRAINING_DATA: dict[str, dict[str, Any]] = {
    "digits": {"builder": "digits_dataset", "kwargs": {"size": 16},
               "source": "sklearn.datasets.load_digits (1797 8x8 images, 0..16), bilinear "
                         "upsampling to 16x16, scaled to [-1, 1]"},
    "textures": {"builder": "textures_dataset",
                 "kwargs": {"n_per_class": 4096, "size": 32, "rows": [0.0, 1.0], "seed": 0, "downscale": 2},
                 "source": "skimage.data brick, grass, gravel (512x512 grayscale photos), "
                           "2x box-downscaled to 256x256, random 32x32 crops with random "
                           "flips, scaled to [-1, 1]"},
}


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


BUILDERS = {"digits_dataset": digits_dataset, "textures_dataset": textures_dataset}


def build_dataset(data_cfg: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """Call the named builder (``BUILDERS``) with its kwargs: a ``TRAINING_DATA`` entry."""
    kwargs = dict(data_cfg["kwargs"])
    if "rows" in kwargs:
        kwargs["rows"] = tuple(kwargs["rows"])
    return BUILDERS[data_cfg["builder"]](**kwargs)


__all__ = ["TRAINING_DATA", "DataSource", "build_dataset", "digits_dataset", "gaussian_draws", "open_data",
           "read_image", "textures_dataset"]
