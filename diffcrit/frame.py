"""The single time/noise frame of docs/design.md §2.

Notation (docs/design.md §2):
    y      = x0 + sigma * n          variance-exploding ("EDM") state, what diffcrit analyses
    x_t    = sqrt(ab) x0 + sqrt(1-ab) eps   a VP model's own state, ab = alphas_cumprod[timestep]
    sigma  = sqrt((1 - ab) / ab)     noise level in the VE frame
    t      = log(1 + sigma^2) = -log(ab)    OU time of dx = -x/2 dt + dW
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch  # the time frame itself needs no torch (`diffcrit plot` reads it)


def sigma_to_t(sigma: float | np.ndarray) -> float | np.ndarray:
    """t = log(1 + sigma^2) (docs/design.md §2); elementwise for an array (a figure's sigma axis)."""
    if isinstance(sigma, np.ndarray) and sigma.ndim:
        return np.log1p(sigma.astype(float) ** 2)
    return math.log1p(float(sigma) ** 2)


def t_to_sigma(t: float | np.ndarray) -> float | np.ndarray:
    """Inverse of ``sigma_to_t``: sigma = sqrt(exp(t) - 1), 0 for t <= 0; elementwise for an array."""
    if isinstance(t, np.ndarray) and t.ndim:
        return np.sqrt(np.maximum(np.expm1(t.astype(float)), 0.0))
    return math.sqrt(max(math.expm1(float(t)), 0.0))


def alpha_bar_to_sigma(alpha_bar: torch.Tensor) -> torch.Tensor:
    """VP signal level ab -> VE sigma = sqrt((1 - ab) / ab)."""
    return ((1 - alpha_bar) / alpha_bar).sqrt()


def karras_sigmas(n: int, sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0) -> torch.Tensor:
    """Karras et al. (2022) Eq. 5 noise levels, decreasing, length n (no trailing zero)."""
    import torch

    ramp = torch.linspace(0, 1, n, dtype=torch.float64)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return (hi + ramp * (lo - hi)) ** rho
