"""Forward–backward (``analyze --clones G --classifier``): noise a final sample to t and regenerate it; does it keep
its class? (docs/design.md §6 ``class_decision_fb``; Sclocchi, Favero, Wyart 2025.)

At each branch step b of the clones (sampling/clones.py; the same t grid), every trunk final x0_i (N, C, H, W) in the
model's own space (a latent model's latent) is noised in the VE frame, the denoiser contract (docs/design.md §2):

    y_i(b) = x0_i + sigma_b z_i,

and regenerated down the run's sigmas from step b by the clones' sampler (``clones.clone_all``: the VE ancestral
step, whatever the run's sampler). analysis/class_decision.py compares the class of the regenerated final with x0_i's.
Sample i draws z_i and the regeneration's noise from two CPU generators seeded from (seed + i, b, stream), with
streams no clone uses, so the result does not depend on batching or process count.
Cost: (S - b) forwards per sample and branch step, half the clones'.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from ..config import SamplingConfig
from ..progress import REGENERATING, Callback, ProgressEvent
from . import clones
from .steppers import StepInfo, per_sample_noise

# ``clones.clone_seeds`` streams (its ``clone`` argument) of the noising z and of the regeneration; the clones use
# 0 .. clones.PER_TRUNK - 1.
NOISING, REGENERATION = 0xFB0, 0xFB1


def noised(finals: torch.Tensor, sigma: float, seeds: list[int]) -> torch.Tensor:
    """y = x0 + sigma z (n, C, H, W) float32 in the VE frame, z of row k from a CPU generator seeded ``seeds[k]``."""
    generators = [torch.Generator("cpu").manual_seed(seed) for seed in seeds]
    return finals.float() + sigma * per_sample_noise(tuple(finals.shape[1:]), generators)


def run_forward_backward(loaded, config: SamplingConfig, infos: list[StepInfo], finals: torch.Tensor, steps: list[int],
                         mine: range, classify: Callable[[torch.Tensor], np.ndarray],
                         callback: Callback) -> dict[int, np.ndarray]:
    """Noise this process's trunk finals ``finals`` (n, C, H, W; global sample indices ``mine``) to each branch step
    in ``steps`` and regenerate them -> {step: classify(regenerated final) (n,) int}."""
    classes = {}
    for done, step in enumerate(sorted(steps)):
        sigma = infos[step].sigma
        y = noised(finals, sigma, clones.clone_seeds(config.seed, mine, step, NOISING))
        classes[step] = classify(clones.clone_all(loaded, config, y, clones.branch_grid(infos, step), mine, step,
                                                  REGENERATION))
        callback(ProgressEvent(REGENERATING, done + 1, len(steps), sigma=sigma, t=infos[step].t))
    return classes


__all__ = ["NOISING", "REGENERATION", "noised", "run_forward_backward"]
