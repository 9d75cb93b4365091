"""The one sampling loop: every trajectory diffcrit draws runs through ``Trajectories`` (docs/design.md §10).

analyze's samples and its Gaussian null, guide's arms, the clones and the training helper's sample grids all
advance here, step by step, every batch at each step (so each step sees all samples, as the estimators need):

    run = Trajectories(make_stepper, shape, seeds, batch_size, conditioning)
    for step in run.steps():     # Step(index, info, y, denoised): (n, C, H, W) float32, VE frame, sample order
        ...                      # record, probe, report progress
    samples = run.final()        # (n, C, H, W) on the CPU, the model's own space

What varies between callers is passed in, never branched on here: the sampler (``make_stepper`` builds one per
batch: a scheduler as its pipeline runs it, Euler on the Karras schedule, the null's, the clones' ancestral
sampler), the per-sample seeds (sample k draws all its noise from a CPU generator seeded ``seeds[k]``, so nothing
depends on the batch size or on how samples are split over processes), the starting states (default: per-sample
noise), and the conditioning of each batch at each step (``conditioning(i, rows)``, rows the batch's positions in
``seeds``). A non-finite y, D(y) or next state stops the run with one line naming the step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import torch

from .steppers import StepInfo, nonfinite_output_error, per_sample_noise

Conditioning = Callable[[int, list[int]], "dict | None"]  # (step index, the batch's rows) -> conditioning dict


@dataclass(frozen=True)
class Step:
    """One recorded step of every sample: y and D(y), (n, C, H, W) float32 in the VE frame, in sample order."""

    index: int
    info: StepInfo
    y: torch.Tensor
    denoised: torch.Tensor


def per_batch(make: Callable[[int], dict | None]) -> Conditioning:
    """Conditioning that is fixed for a batch (``make(n)`` for its n samples), built once per batch."""
    built: dict[tuple[int, int], dict | None] = {}

    def conditioning(i: int, rows: list[int]) -> dict | None:
        key = (rows[0], len(rows))
        if key not in built:
            built[key] = make(len(rows))
        return built[key]

    return conditioning


def unconditional(i: int, rows: list[int]) -> None:
    return None


class Trajectories:
    """The samples of ``seeds`` in batches of ``batch_size``, each batch with its own stepper.

    ``start``: the states to start from (n, C, H, W) instead of per-sample noise (the clones' branch states);
    ``any_rank(flag)``: whether ``flag`` holds on any process (several processes stop together on a non-finite
    step); ``where``: what the non-finite error names (e.g. " of arm critical").
    """

    def __init__(self, make_stepper: Callable[[], Any], shape: tuple[int, ...], seeds: Sequence[int],
                 batch_size: int, conditioning: Conditioning = unconditional, *, start: torch.Tensor | None = None,
                 half_precision: bool = False, where: str = "", any_rank: Callable[[bool], bool] = bool):
        self.generators = [torch.Generator("cpu").manual_seed(int(seed)) for seed in seeds]
        self.rows = [list(range(lo, min(lo + batch_size, len(seeds)))) for lo in range(0, len(seeds), batch_size)]
        self.steppers = [make_stepper() for _ in self.rows]
        self.infos: list[StepInfo] = self.steppers[0].infos if self.steppers else []
        self.conditioning = conditioning
        self.half_precision, self.where, self.any_rank = half_precision, where, any_rank
        if start is None:
            start = per_sample_noise(tuple(shape), self.generators)
        self.xs = [stepper.init(start[rows]) for stepper, rows in zip(self.steppers, self.rows, strict=True)]

    def steps(self) -> Iterator[Step]:
        """Advance every batch one step at a time, yielding each step's (y, D(y)) of all samples."""
        for i, info in enumerate(self.infos):
            ys, ds = [], []
            with torch.no_grad():
                for k, stepper in enumerate(self.steppers):
                    rows = self.rows[k]
                    y, d, self.xs[k] = stepper.step(self.xs[k], i, self.conditioning(i, rows),
                                                    [self.generators[j] for j in rows])
                    ys.append(y)
                    ds.append(d)
            y, d = torch.cat(ys), torch.cat(ds)
            checks = [torch.isfinite(t).all().to(y.device) for t in (y, d, *self.xs)]
            if self.any_rank(not bool(torch.stack(checks).all())):  # one device sync per step
                raise nonfinite_output_error(info, self.half_precision, self.where)
            yield Step(i, info, y, d)

    def run(self) -> torch.Tensor:
        """Every step, nothing recorded -> the final samples."""
        for _ in self.steps():
            pass
        return self.final()

    def final(self) -> torch.Tensor:
        """(n, C, H, W) final samples on the CPU, in the model's own space."""
        return torch.cat([stepper.final(x).cpu() for stepper, x in zip(self.steppers, self.xs, strict=True)])
