"""Streaming per-step states y and D(y) (``--save-states``), and final samples (``--save-samples``).

Nothing is held across steps: each step is written as it completes, so memory does not grow with
the number of steps, and what was written before a crash or Ctrl-C stays readable (files appear by
atomic rename; per-step files are not fsynced, so only an operating-system crash could lose the last ones).

- a folder: ``step_0000.safetensors`` ... (keys ``y``, ``denoised``, (N, C, H, W) float32; metadata
  index, timestep, sigma, t) plus ``index.json`` listing the steps written so far (rewritten atomically);
- a ``.npy`` file: one float32 array (steps, 2, N, C, H, W) ([:, 0] = y, [:, 1] = D), memory-mapped and
  flushed after every step; steps not reached stay zero, ``<file>.json`` says how many were written.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save

from .errors import UserError
from .io import atomic_write_bytes, atomic_write_text, check_writable
from .sampling import StepInfo


def _step_meta(info: StepInfo) -> dict:
    return {"index": info.index, "timestep": info.timestep, "sigma": info.sigma, "t": info.t}


class FolderStates:
    def __init__(self, folder: Path):
        self.folder = folder
        self.written: list[dict] = []

    def write(self, info: StepInfo, y: torch.Tensor, denoised: torch.Tensor) -> None:
        tensors = {"y": y.float().cpu().contiguous(), "denoised": denoised.float().cpu().contiguous()}
        meta = {k: str(v) for k, v in _step_meta(info).items()}
        atomic_write_bytes(self.folder / f"step_{info.index:04d}.safetensors", save(tensors, metadata=meta), durable=False)
        self.written.append(_step_meta(info))
        atomic_write_text(self.folder / "index.json", json.dumps({"steps": self.written}, indent=1), durable=False)

    def close(self) -> None:
        pass


class NpyStates:
    def __init__(self, path: Path, steps: int, samples: int, shape: tuple[int, int, int]):
        self.path = path
        self.array = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(steps, 2, samples, *shape))
        self.written: list[dict] = []

    def write(self, info: StepInfo, y: torch.Tensor, denoised: torch.Tensor) -> None:
        self.array[info.index, 0] = y.float().cpu().numpy()
        self.array[info.index, 1] = denoised.float().cpu().numpy()
        self.array.flush()
        self.written.append(_step_meta(info))
        atomic_write_text(self.path.with_suffix(".npy.json"), json.dumps({"steps": self.written}, indent=1), durable=False)

    def close(self) -> None:
        self.array.flush()
        del self.array


def open_states(target: Path | str, steps: int, samples: int, shape: tuple[int, int, int]):
    """A folder writer, or a .npy writer when ``target`` ends in .npy; checked before any sampling."""
    target = Path(target)
    if target.suffix == ".npy":
        return NpyStates(check_writable(target, "--save-states file"), steps, samples, shape)
    if target.exists() and not target.is_dir():
        raise UserError(f"--save-states {target} exists and is not a folder", "give a folder or a .npy file")
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"cannot create --save-states folder {target}: {err.strerror}") from None
    return FolderStates(target)


def save_samples(path: Path | str, samples: torch.Tensor, metadata: dict | None = None) -> None:
    """Final samples as safetensors, key ``samples`` (N, C, H, W), model's own space (DESIGN.md §7)."""
    data = save({"samples": samples.float().cpu().contiguous()}, metadata={k: str(v) for k, v in (metadata or {}).items()})
    atomic_write_bytes(path, data)


def load_samples(path: Path | str) -> torch.Tensor:
    from safetensors.torch import load_file

    return load_file(str(path))["samples"]


__all__ = ["open_states", "save_samples", "load_samples"]
