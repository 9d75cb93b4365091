"""Clones (``--clones G``): the decided fraction measured directly, with no assumption on the model.

At G branch steps b, every trunk sample's state y_i(t_b) is continued twice with independent noise
by a stochastic reverse sampler, and the final low modes of the two continuations are correlated
(docs/design.md §5):

    f_k(t_b) = Re sum_k Cov_i(a_i(k), b_i(k)) / (1/2) sum_k (Var_i a_i(k) + Var_i b_i(k))

over the shell's FFT bins and channels, a and b the two clones' final coefficients
(analysis/estimators.clone_fraction; this module samples the clones). Two clones
branched at y share exactly E[x0 | y]: their covariance is Var E[x0 | y] and the ratio is the share
of the final variance fixed at t_b, which the decided fraction estimates from D(y) alone. The two
agree within their intervals when the model is consistent (the exact references, tests/test_clones.py);
where they disagree the model's x0 estimate D(y) is not the mean of what its own sampler draws.

The sampler is the ancestral (DDPM posterior) step in the VE frame on the run's own sigmas, the same
for every model: from sigma to sigma' < sigma,

    y' = (sigma'^2 / sigma^2) y + (1 - sigma'^2 / sigma^2) D(y) + sigma' sqrt(1 - sigma'^2 / sigma^2) z,

and y' = D(y) at the last step (sigma' = 0). Clone c of trunk sample i draws its noise from a CPU
generator seeded from (seed + i, b, c), so clones do not depend on batching or process count.
Cost: about 2 (S - b) forwards per sample and branch step, G times the sampling cost on average.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch

from ..config import SamplingConfig
from ..spectral.fourier import LowBins, shell_coefficients, spectrum
from ..progress import CLONING, Callback, ProgressEvent
from .loop import Trajectories, per_batch
from .steppers import StepInfo, per_sample_noise

# The stochastic continuations per trunk sample (a pair gives one covariance).
PER_TRUNK = 2


def branch_steps(n_steps: int, count: int) -> list[int]:
    """``count`` distinct steps spread evenly over 0..S-2 in step index (the last step leaves nothing to decide)."""
    if count <= 0:
        return []
    return sorted({int(round(x)) for x in np.linspace(0, n_steps - 2, count + 2)[1:-1]})


def descending(sigmas: list[float], start: int) -> list[int]:
    """Indices from ``start`` on whose sigma is below every earlier one (a second evaluation at a sigma
    already seen, as in Heun's method, is skipped): the clone sampler's grid."""
    out, lowest = [start], sigmas[start]
    for j in range(start + 1, len(sigmas)):
        if sigmas[j] < lowest:
            out.append(j)
            lowest = sigmas[j]
    return out


def branch_grid(infos: list[StepInfo], start: int) -> list[tuple[float, float | None]]:
    """The clone sampler's grid from step ``start``: [(sigma, timestep), ...] of the ``descending`` steps."""
    sigmas = [info.sigma for info in infos]
    return [(sigmas[j], infos[j].timestep) for j in descending(sigmas, start)]


def ancestral_step(y: torch.Tensor, denoised: torch.Tensor, sigma: float, sigma_next: float,
                   noise: torch.Tensor) -> torch.Tensor:
    """One VE ancestral (DDPM posterior) step from sigma to sigma_next (0 gives D(y))."""
    if sigma_next <= 0:
        return denoised
    keep = (sigma_next / sigma) ** 2
    return keep * y + (1 - keep) * denoised + sigma_next * math.sqrt(1 - keep) * noise


def clone_seeds(seed: int, samples: range, branch: int, clone: int) -> list[int]:
    """The seed of each trunk sample's CPU generator for clone ``clone`` branched at step ``branch``."""
    return [int(np.random.SeedSequence([seed + i, branch, clone]).generate_state(1, np.uint64)[0] >> 1)
            for i in samples]


class AncestralStepper:
    """The clones' sampler for one batch: ``ancestral_step`` down ``grid`` [(sigma, timestep), ...] to sigma = 0 from
    given states (``init`` takes them as they are: y (B, C, H, W) in the VE frame), each step's noise drawn from the
    per-sample generators. ``denoiser``: the docs/design.md §2 contract."""

    def __init__(self, denoiser: Callable, grid: list[tuple[float, float | None]], device: torch.device | str):
        self.denoiser, self.grid, self.device = denoiser, grid, torch.device(device)
        self.infos = [StepInfo(j, sigma, timestep) for j, (sigma, timestep) in enumerate(grid)]

    def init(self, y: torch.Tensor) -> torch.Tensor:
        return y.to(self.device)

    def step(self, y, i, cond, generators):
        sigma, timestep = self.grid[i]
        n = y.shape[0]
        ts = None if timestep is None else torch.full((n,), timestep, device=y.device)
        denoised = self.denoiser(y, torch.full((n,), sigma, device=y.device), ts, cond).float()
        sigma_next = self.grid[i + 1][0] if i + 1 < len(self.grid) else 0.0
        noise = per_sample_noise(tuple(y.shape[1:]), generators).to(y.device)
        return y, denoised, ancestral_step(y, denoised, sigma, sigma_next, noise)

    def final(self, y: torch.Tensor) -> torch.Tensor:
        return y.float()


def run_clones(loaded, config: SamplingConfig, infos: list, states: dict[int, torch.Tensor], mine: range, bins: LowBins,
               callback: Callback, classify: Callable[[torch.Tensor], np.ndarray] | None = None
               ) -> tuple[dict[int, list[np.ndarray]], dict[int, list[np.ndarray]]]:
    """Two clones of every sample of this process (global indices ``mine``) at each branch step in ``states``
    ({step: y (n, C, H, W) in the VE frame}) -> ({step: [coefficients (n, C, Q) complex of each clone's final
    sample at the low bins]}, {step: [classify(final) (n,) of each clone]}; the second empty without ``classify``)
    (analysis/estimators.clone_fraction and analysis/class_decision turn them into fractions)."""
    sigmas = [info.sigma for info in infos]
    coefs, classes = {}, {}
    for done, step in enumerate(sorted(states)):
        grid = branch_grid(infos, step)
        finals = [clone_all(loaded, config, states[step], grid, mine, step, c) for c in range(PER_TRUNK)]
        coefs[step] = [shell_coefficients(spectrum(final), bins).numpy() for final in finals]
        if classify is not None:
            classes[step] = [classify(final) for final in finals]
        callback(ProgressEvent(CLONING, done + 1, len(states), sigma=sigmas[step], t=infos[step].t))
    return coefs, classes


def clone_all(loaded, config: SamplingConfig, y: torch.Tensor, grid: list, mine: range, branch: int,
              clone: int) -> torch.Tensor:
    """Clone ``clone`` of every state in ``y`` (this process's rows), in batches -> finals (n, C, H, W) on CPU."""
    run = Trajectories(lambda: AncestralStepper(loaded.denoiser, grid, loaded.device), tuple(y.shape[1:]),
                       clone_seeds(config.seed, mine, branch, clone), config.batch_size,
                       per_batch(loaded.conditioning), start=y, half_precision=loaded.half_precision,
                       where=f" of a clone branched at step {branch}")
    return run.run()


__all__ = ["run_clones", "PER_TRUNK", "branch_steps", "descending", "ancestral_step", "clone_seeds",
           "AncestralStepper", "branch_grid", "clone_all"]
