"""Clones (``--clones G``): the decided fraction measured directly, with no assumption on the model.

At G branch steps b, every trunk sample's state y_i(t_b) is continued twice with independent noise
by a stochastic reverse sampler, and the final low modes of the two continuations are correlated
(docs/design.md §5):

    f_k(t_b) = Re sum_k Cov_i(a_i(k), b_i(k)) / (1/2) sum_k (Var_i a_i(k) + Var_i b_i(k))

over the shell's FFT bins and channels, a and b the two clones' final coefficients. Two clones
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

from ..analysis.detection import percentile_interval
from ..probing.fourier import LowBins, shell_coefficients, spectrum
from ..progress import CLONING, Callback, ProgressEvent

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


def ancestral_step(y: torch.Tensor, denoised: torch.Tensor, sigma: float, sigma_next: float,
                   noise: torch.Tensor) -> torch.Tensor:
    """One VE ancestral (DDPM posterior) step from sigma to sigma_next (0 gives D(y))."""
    if sigma_next <= 0:
        return denoised
    keep = (sigma_next / sigma) ** 2
    return keep * y + (1 - keep) * denoised + sigma_next * math.sqrt(1 - keep) * noise


def clone_generators(seed: int, samples: range, branch: int, clone: int) -> list[torch.Generator]:
    """One CPU generator per trunk sample for clone ``clone`` branched at step ``branch``."""
    return [torch.Generator("cpu").manual_seed(int(np.random.SeedSequence([seed + i, branch, clone])
                                                   .generate_state(1, np.uint64)[0] >> 1)) for i in samples]


def continue_clone(denoise: Callable, y: torch.Tensor, grid: list[tuple[float, float | None]],
                   generators: list[torch.Generator]) -> torch.Tensor:
    """Run one clone of the states ``y`` (B, C, H, W) down ``grid`` [(sigma, timestep), ...] to sigma = 0.

    ``denoise(y, sigma, timestep)`` -> D(y) (B, C, H, W) in the VE frame.
    """
    for j, (sigma, timestep) in enumerate(grid):
        denoised = denoise(y, sigma, timestep).float()
        sigma_next = grid[j + 1][0] if j + 1 < len(grid) else 0.0
        noise = torch.cat([torch.randn((1, *y.shape[1:]), generator=g) for g in generators]).to(y.device)
        y = ancestral_step(y, denoised, sigma, sigma_next, noise)
    return y


def clone_fraction(coef_a: np.ndarray, coef_b: np.ndarray, bin_shell: np.ndarray, n_shells: int) -> np.ndarray:
    """(K,) correlation of the two clones' final low modes per shell; coef: (N, C, Q) complex. NaN where the
    clones do not vary."""
    a = coef_a - coef_a.mean(0, keepdims=True)
    b = coef_b - coef_b.mean(0, keepdims=True)
    cov = (a * np.conj(b)).real.mean(0).sum(0)  # (Q,)
    var = 0.5 * (np.abs(a) ** 2 + np.abs(b) ** 2).mean(0).sum(0)
    out = np.full(n_shells, np.nan)
    for n in range(n_shells):
        total = var[bin_shell == n].sum()
        if total > 0:
            out[n] = cov[bin_shell == n].sum() / total
    return out


def fraction_ci95(coef_a: np.ndarray, coef_b: np.ndarray, bin_shell: np.ndarray, n_shells: int, repeats: int,
                  seed: int) -> np.ndarray | None:
    """(K, 2) percentile ci95 of ``clone_fraction`` over resamples of the trunk samples (None without resamples)."""
    if repeats <= 0:
        return None
    rng = np.random.default_rng(seed)
    n = coef_a.shape[0]
    draws = np.stack([clone_fraction(coef_a[rows], coef_b[rows], bin_shell, n_shells)
                      for rows in (rng.integers(0, n, n) for _ in range(repeats))])
    return np.array([percentile_interval(draws[:, k]) if np.isfinite(draws[:, k]).sum() > 1 else (np.nan, np.nan)
                     for k in range(n_shells)])


def measure(loaded, config, infos: list, states: dict[int, torch.Tensor], mine: range, ranks, bins: LowBins,
            callback: Callback) -> dict:
    """The ``clones`` block of the result: two clones of every sample of this process (global indices
    ``mine``) at each branch step in ``states`` ({step: y (n, C, H, W) in the VE frame}), their final
    low modes gathered over the processes, the correlation per shell with its bootstrap ci95."""
    sigmas = [info.sigma for info in infos]
    steps = sorted(states)
    fractions, intervals = [], []
    for done, step in enumerate(steps):
        grid = [(sigmas[j], infos[j].timestep) for j in descending(sigmas, step)]
        finals = [_clone_all(loaded, config, states[step], grid, mine, step, c) for c in range(PER_TRUNK)]
        coefs = [np.concatenate(ranks.all_objects(shell_coefficients(spectrum(f), bins).numpy())) for f in finals]
        fractions.append(clone_fraction(*coefs, bins.shell.numpy(), config.shells))
        band = fraction_ci95(*coefs, bins.shell.numpy(), config.shells, config.bootstrap, config.seed + step)
        intervals.append(None if band is None else band.tolist())
        callback(ProgressEvent(CLONING, done + 1, len(steps), sigma=sigmas[step], t=infos[step].t))
    return {"branch_steps": steps, "t": [infos[s].t for s in steps], "sigma": [sigmas[s] for s in steps],
            "per_trunk": PER_TRUNK, "sampler": "VE ancestral (DDPM posterior) step on the run's sigmas",
            "fraction": [f.tolist() for f in fractions],
            "fraction_ci95": intervals if config.bootstrap > 0 else None}


def _clone_all(loaded, config, y: torch.Tensor, grid: list, mine: range, branch: int, clone: int) -> torch.Tensor:
    """Clone ``clone`` of every state in ``y`` (this process's rows), in batches -> finals (n, C, H, W) on CPU."""
    out = []
    generators = clone_generators(config.seed, mine, branch, clone)
    for lo in range(0, y.shape[0], config.batch_size):
        rows = range(lo, min(lo + config.batch_size, y.shape[0]))
        cond = loaded.conditioning(len(rows))

        def denoise(z, sigma, timestep, cond=cond):
            sigma_t = torch.full((z.shape[0],), sigma, device=z.device)
            ts = None if timestep is None else torch.full((z.shape[0],), timestep, device=z.device)
            return loaded.denoiser(z, sigma_t, ts, cond)

        with torch.no_grad():
            out.append(continue_clone(denoise, y[lo:rows.stop].to(loaded.device), grid,
                                      generators[lo:rows.stop]).float().cpu())
    return torch.cat(out)


__all__ = ["measure", "PER_TRUNK", "branch_steps", "descending", "ancestral_step", "clone_generators", "continue_clone",
           "clone_fraction", "fraction_ci95"]
