"""Several processes (``torchrun`` / ``accelerate launch``): who samples what, and how records merge.

    torchrun --nproc_per_node 4 -m diffcrit analyze --model google/ddpm-cifar10-32 --samples 256
    accelerate launch --num_processes 4 -m diffcrit analyze ...

Samples are split in contiguous slices (``accelerate.PartialState.split_between_processes``): with
N samples over R ranks, rank r samples global indices [lo_r, hi_r) and sample i still draws all its
noise from a generator seeded ``seed + i`` (docs/design.md §9), so the trajectories are those of a single
process. Everything the estimators need merges exactly:

- per-sample Fourier coefficients of y and D(y) at every low-shell bin (N, C, Q): gathered in sample order
  at the end of sampling (structure factors, decided fractions and correlation lengths follow from them);
- probe points are the global samples 0..P-1, gathered to every rank each step; each rank probes a
  contiguous slice of the directions and the gains (P, M) are gathered in direction order;
- final samples and, with ``--save-states``, each step's y and D(y) are gathered (rank 0 writes).

Every rank ends with the same records and builds the same document; only rank 0 prints or writes.
Without a launcher (no ``WORLD_SIZE`` > 1 in the environment) nothing here touches
``torch.distributed``: one process, the collectives are identities.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any, Iterator

import torch

from .errors import UserError


def launched() -> bool:
    """True inside ``torchrun`` / ``accelerate launch`` with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def is_main_process() -> bool:
    """Rank 0 (or no launcher), read from the launcher's environment: usable before any setup."""
    return int(os.environ.get("RANK", "0")) == 0


class Ranks:
    """This process's share of the work and the collectives that merge it (identities when alone)."""

    def __init__(self, state: Any = None):
        self.state = state  # accelerate.PartialState, or None for a single process
        self.rank = int(state.process_index) if state is not None else 0
        self.world = int(state.num_processes) if state is not None else 1
        # Collectives run on the backend's device: the rank's GPU under NCCL, the CPU under gloo.
        nccl = state is not None and state.backend == "nccl"
        self.device = torch.device(state.device) if nccl else torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def describe(self) -> dict:
        backend = None if self.state is None else self.state.backend
        return {"processes": self.world, "backend": backend}

    @contextlib.contextmanager
    def main_first(self) -> Iterator[None]:
        """Rank 0 runs the block first (downloads into the cache), the others then read the cache."""
        if self.state is None:
            yield
        else:
            with self.state.main_process_first():
                yield

    def split(self, count: int) -> range:
        """This rank's contiguous slice of range(count) (the first ``count % world`` ranks get one more)."""
        if self.state is None:
            return range(count)
        with self.state.split_between_processes(list(range(count))) as mine:
            return range(mine[0], mine[-1] + 1) if mine else range(0)

    def all_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum of ``tensor`` over ranks (complex allowed), on every rank, on the tensor's device
        (``accelerate.utils.reduce``)."""
        if self.world == 1:
            return tensor
        from accelerate.utils import reduce

        summed = reduce(_as_real(tensor).to(self.device), reduction="sum")
        return _like(summed, tensor)

    def any(self, flag: bool) -> bool:
        """True on every rank if ``flag`` is true on any (so that all ranks raise together)."""
        if self.world == 1:
            return flag
        return bool(self.all_sum(torch.tensor([float(flag)])).item() > 0)

    def all_rows(self, tensor: torch.Tensor) -> torch.Tensor:
        """Concatenate every rank's rows (dim 0, counts may differ; complex allowed) in rank order, on every rank:
        each rank's rows padded to the longest (``accelerate.utils.pad_across_processes``), gathered
        (``accelerate.utils.gather``), the padding dropped."""
        if self.world == 1:
            return tensor
        from accelerate.utils import gather, pad_across_processes

        rows = _as_real(tensor).to(self.device).contiguous()
        counts = gather(torch.tensor([rows.shape[0]], device=self.device)).tolist()
        padded = pad_across_processes(rows, dim=0)
        blocks = gather(padded).split(padded.shape[0])
        return _like(torch.cat([block[:count] for block, count in zip(blocks, counts, strict=True)]), tensor)

    def all_objects(self, obj: Any) -> list:
        """Every rank's picklable ``obj``, in rank order, on every rank (``accelerate.utils.gather_object``)."""
        if self.world == 1:
            return [obj]
        from accelerate.utils import gather_object

        return gather_object([obj])


def _as_real(tensor: torch.Tensor) -> torch.Tensor:
    """A complex tensor as real pairs in a last dim of 2 (``torch.view_as_real``), any other as it is: the collectives
    take real tensors."""
    return torch.view_as_real(tensor) if tensor.is_complex() else tensor


def _like(result: torch.Tensor, tensor: torch.Tensor) -> torch.Tensor:
    """``result`` of a collective back in ``tensor``'s kind (complex from real pairs) and device."""
    result = torch.view_as_complex(result.contiguous()) if tensor.is_complex() else result
    return result.to(tensor.device)


def current(device: str = "auto") -> Ranks:
    """The ranks of this launch: accelerate's PartialState under a launcher, else one process.

    ``device`` is the config's device: "cpu" or "mps" (or no CUDA) selects gloo, otherwise NCCL on the
    rank's GPU (PartialState sets it as the current device, so "cuda" means this rank's GPU; a fixed "cuda:N" would
    put every rank on one GPU and is refused).
    """
    if not launched():
        return Ranks()
    from accelerate import PartialState

    if device.startswith("cuda:"):
        raise UserError(f"`device` {device} under a launcher: every process takes its own GPU",
                        "use `device` cuda (or auto), and choose the GPUs with CUDA_VISIBLE_DEVICES", option="device")
    cpu = device in ("cpu", "mps") or not torch.cuda.is_available()
    return Ranks(PartialState(cpu=cpu))


class GatheredStates:
    """``--save-states`` under several ranks: each step's rows are gathered and rank 0 writes them.

    The files are the ones a single process writes (same layout, all N samples per step); the
    cost is one gather per step of what is written anyway. ``writer`` is None on other ranks.
    """

    def __init__(self, writer: Any, ranks: Ranks):
        self.writer = writer
        self.ranks = ranks

    def write(self, info, y: torch.Tensor, denoised: torch.Tensor) -> None:
        y_all, d_all = self.ranks.all_rows(y.float()), self.ranks.all_rows(denoised.float())
        if self.writer is not None:
            self.writer.write(info, y_all, d_all)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
