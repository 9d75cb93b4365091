"""Streaming per-step states y and D(y) (``--save-states``), and final samples (``--save-samples``).

Nothing is held across steps: each step is written as it completes, so memory does not grow with
the number of steps, and what was written before a crash or Ctrl-C stays readable (files appear by
atomic rename; per-step files are not fsynced, so only an operating-system crash could lose the last ones).

- a folder: ``step_0000.safetensors`` ... (keys ``y``, ``denoised``, (N, C, H, W) float32; metadata
  index, timestep, sigma, t) plus ``index.json`` listing the steps written so far (rewritten atomically).
  A folder holding an ``index.json`` is a states folder of an earlier run: it is reused, and its old
  ``step_*.safetensors`` are removed when it is opened (other files are left alone); any other non-empty
  folder is refused;
- a ``.npy`` file: one float32 array (steps, 2, N, C, H, W) ([:, 0] = y, [:, 1] = D), allocated on disk in
  full when opened (a full disk is one error then, not a SIGBUS later), memory-mapped and flushed after every
  step; steps not reached stay zero, ``<file>.json`` says how many were written.
Writes go through ``io.atomic_write_bytes``: a full disk is an ``OutputError``.
"""

from __future__ import annotations

import contextlib
import json
import re
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save

from ..errors import OutputError, UserError
from ..io import (atomic_write_bytes, atomic_write_text, check_writable, check_writable_dir, is_special, preallocate,
                  resolve_output)
from .steppers import StepInfo

INDEX_FILE = "index.json"
STEP_FILE = re.compile(r"step_\d{4,}\.safetensors")  # f"step_{index:04d}.safetensors"
SAMPLES_SUFFIX = ".safetensors"
INDEX_SUFFIX = ".json"  # a .npy states file's index: <file>.npy.json


def _step_meta(info: StepInfo) -> dict:
    meta = {"index": info.index, "timestep": info.timestep, "sigma": info.sigma, "t": info.t}
    return meta if info.evaluation is None else {**meta, "evaluation": info.evaluation}


class FolderStates:
    def __init__(self, folder: Path):
        """Start the folder afresh: an empty index first (so it never lists a removed step), then remove
        the step files of an earlier run."""
        self.folder = folder
        self.written: list[dict] = []
        self._write_index()
        for old in folder.iterdir():
            if STEP_FILE.fullmatch(old.name) and not old.is_dir():
                try:
                    old.unlink()
                except OSError as err:
                    raise OutputError(f"cannot remove the old step file {old}: {err.strerror}") from err

    def write(self, info: StepInfo, y: torch.Tensor, denoised: torch.Tensor) -> None:
        tensors = {"y": y.float().cpu().contiguous(), "denoised": denoised.float().cpu().contiguous()}
        meta = {k: str(v) for k, v in _step_meta(info).items()}
        step_file = self.folder / f"step_{info.index:04d}.safetensors"
        atomic_write_bytes(step_file, save(tensors, metadata=meta), durable=False)
        self.written.append(_step_meta(info))
        try:
            self._write_index()
        except OutputError:  # the index could not list it: do not leave the step behind unlisted
            self.written.pop()
            with contextlib.suppress(OSError):
                step_file.unlink()
            raise

    def _write_index(self) -> None:
        atomic_write_text(self.folder / INDEX_FILE, json.dumps({"steps": self.written}, indent=1), durable=False)

    def close(self) -> None:
        pass


class NpyStates:
    def __init__(self, path: Path, steps: int, samples: int, shape: tuple[int, int, int]):
        """Create the array file, allocate its data on disk for real, then map it; on any failure the
        file is removed."""
        self.path = path
        self.written: list[dict] = []
        try:
            created = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(steps, 2, samples, *shape))
            offset, nbytes = created.offset, created.nbytes
            del created  # unmapped before a single page is touched
            with open(path, "r+b") as handle:
                preallocate(handle.fileno(), offset, nbytes)
            self.array = np.lib.format.open_memmap(path, mode="r+")
            self._write_index()
        except BaseException as err:
            with contextlib.suppress(OSError):
                path.unlink()
            if isinstance(err, OSError):
                raise OutputError(f"cannot write `save_states` file {path}: {err.strerror or err}",
                                  option="save_states") from err
            raise

    def write(self, info: StepInfo, y: torch.Tensor, denoised: torch.Tensor) -> None:
        self.array[info.index, 0] = y.float().cpu().numpy()
        self.array[info.index, 1] = denoised.float().cpu().numpy()
        self.array.flush()
        self.written.append(_step_meta(info))
        self._write_index()

    def _write_index(self) -> None:
        atomic_write_text(f"{self.path}{INDEX_SUFFIX}", json.dumps({"steps": self.written}, indent=1),
                          durable=False)

    def close(self) -> None:
        self.array.flush()
        del self.array


def check_states_target(target: Path | str) -> Path:
    """The cheap checks of a ``--save-states`` target, made before any model is loaded: a writable
    .npy file, or a writable folder that is new, empty or a states folder of an earlier run."""
    target = Path(target)
    if target.suffix == ".npy":
        return check_writable(target, "`save_states` file")
    folder = resolve_output(target)  # what the name reaches ("new/../old" is old)
    if folder.exists() and not folder.is_dir():
        raise UserError(f"`save_states` {target} exists and is not a folder", "give a folder or a .npy file",
                        option="save_states")
    if folder.is_dir() and not (folder / INDEX_FILE).is_file() and any(folder.iterdir()):
        raise UserError(f"`save_states` folder {target} is not empty and has no {INDEX_FILE} of an earlier run",
                        "give a new or empty folder, or the states folder of an earlier run to replace it",
                        option="save_states")
    return check_writable_dir(target, "`save_states` folder")


def open_states(target: Path | str, steps: int, samples: int, shape: tuple[int, int, int]):
    """A folder writer, or a .npy writer when ``target`` ends in .npy; checked before any sampling."""
    target = check_states_target(target)
    if target.suffix == ".npy":
        return NpyStates(target, steps, samples, shape)
    try:
        folder = resolve_output(target)
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"cannot create `save_states` folder {target}: {err.strerror}", option="save_states") from None
    return FolderStates(folder)


def check_samples_path(path: Path | str, what: str = "`save_samples_to` file") -> Path:
    """A writable path named ``*.safetensors`` (the format ``save_samples`` writes), or a device or FIFO."""
    path = Path(path)
    if path.suffix != SAMPLES_SUFFIX and not is_special(path):
        raise UserError(f"{what} {path} must end in {SAMPLES_SUFFIX}: samples are written as safetensors",
                        f"name it {path.with_suffix(SAMPLES_SUFFIX).name}")
    return check_writable(path, what)


def save_samples(path: Path | str, samples: torch.Tensor, metadata: dict | None = None) -> None:
    """Final samples as safetensors, key ``samples`` (N, C, H, W), model's own space (docs/design.md §9)."""
    atomic_write_bytes(path, samples_bytes(samples, metadata))


def samples_bytes(samples: torch.Tensor, metadata: dict | None = None) -> bytes:
    """What ``save_samples`` writes, as bytes (a command stages them with its other outputs)."""
    meta = {k: str(v) for k, v in (metadata or {}).items()}
    return save({"samples": samples.float().cpu().contiguous()}, metadata=meta)


def load_samples(path: Path | str) -> torch.Tensor:
    from safetensors.torch import load_file

    return load_file(str(path))["samples"]


__all__ = ["check_states_target", "open_states", "check_samples_path", "save_samples", "samples_bytes",
           "load_samples"]
