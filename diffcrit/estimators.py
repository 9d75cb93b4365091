"""Pure estimators: stiffness, Ginzburg–Landau fit, correlation lengths (DESIGN.md §3, §4).

Arrays in, arrays out (float64 numpy), vectorised over any leading axes (steps, resamples);
no I/O, no config objects. NaN marks a value that does not exist (an unprobed step).
"""

from __future__ import annotations

import math

import numpy as np

# Below this |s| on every shell, a float32 J v (absolute error ~1e-7 per gain, more through deep
# networks) cannot resolve the stiffness: the Ginzburg–Landau fit is left undefined (NaN).
STIFFNESS_RESOLUTION = 1e-4


def shell_stiffness(gains: np.ndarray, shell: np.ndarray, n_shells: int) -> tuple[np.ndarray, np.ndarray]:
    """Mode stiffness s = 1 - g per shell: (mean (..., K), standard error (..., K)).

    gains: (..., P, M) mode gains <v, J v> of P probe points and M directions; shell: (M,).
    Mean over the probe points and the shell's directions; standard error = spread of those
    values / sqrt(count) (0 for a single value).
    """
    stiffness = 1.0 - gains
    means, sems = [], []
    for n in range(n_shells):
        values = stiffness[..., shell == n].reshape(*stiffness.shape[:-2], -1)
        count = values.shape[-1]
        means.append(values.mean(-1))
        sems.append(values.std(-1, ddof=1) / math.sqrt(count) if count > 1 else np.zeros(values.shape[:-1]))
    return np.stack(means, -1), np.stack(sems, -1)


def ginzburg_landau_fit(stiffness: np.ndarray, k2: np.ndarray, sigma: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Least squares s(k) = s0 + c k^2 over the shells -> (r, kappa, xi_eq), each (...,) (DESIGN.md §3).

    stiffness: (..., K) shell means; k2: (K,) mean |k|^2 of each shell's probe directions;
    sigma: (...,). r = s0 / sigma^2, kappa = c / sigma^2, xi_eq = sqrt(c / |s0|) pixels (NaN when c <= 0
    or |s0| is below STIFFNESS_RESOLUTION); all NaN where no shell's |s| exceeds it.
    """
    resolved = np.abs(stiffness).max(-1) > STIFFNESS_RESOLUTION
    design = np.stack([np.ones_like(k2), k2], axis=1)  # (K, 2)
    coef = np.linalg.pinv(design) @ np.moveaxis(stiffness, -1, 0).reshape(len(k2), -1)  # (2, n)
    s0 = coef[0].reshape(stiffness.shape[:-1])
    c = coef[1].reshape(stiffness.shape[:-1])
    with np.errstate(divide="ignore", invalid="ignore"):
        xi_eq = np.where((c > 0) & (np.abs(s0) > STIFFNESS_RESOLUTION), np.sqrt(np.abs(c / s0)), np.nan)
    unresolved = lambda v: np.where(resolved, v, np.nan)  # noqa: E731
    return unresolved(s0 / sigma**2), unresolved(c / sigma**2), unresolved(xi_eq)


def connected_structure_factor(sum_f: np.ndarray, sum_f2: np.ndarray, count: int) -> np.ndarray:
    """S(k) = E|F(k)|^2 - |E F(k)|^2 over samples, from sums of F and |F|^2 (fourier.fourier_sums)."""
    mean = sum_f / count
    return sum_f2 / count - (mean.real**2 + mean.imag**2)


def radial_average(values: np.ndarray, shells: np.ndarray, n_shells: int) -> np.ndarray:
    """Mean of (C, H, W) values over channels and the FFT bins of each shell 0..K-1 -> (K,)."""
    flat = values.reshape(-1, values.shape[-2] * values.shape[-1]).mean(0)
    shells = shells.ravel()
    return np.array([flat[shells == n].mean() for n in range(n_shells)])


def correlation_length(coefficients: np.ndarray, side: int) -> np.ndarray:
    """Second-moment correlation length xi = sqrt(S(0)/S(k1) - 1) / (2 sin(k1/2)) (DESIGN.md §4).

    coefficients: (..., N, C, 3) complex F(0,0), F(0,1), F(1,0) of N samples
    (fourier.low_mode_coefficients). S is the connected structure factor over the samples
    (batch mean subtracted), averaged over channels and the two k1 wave-vectors. Returns (...,);
    NaN with fewer than 2 samples or S(k1) = 0.
    """
    if coefficients.shape[-3] < 2:
        return np.full(coefficients.shape[:-3], np.nan)
    centred = coefficients - coefficients.mean(-3, keepdims=True)
    power = (centred.real**2 + centred.imag**2).mean(axis=(-3, -2))  # (..., 3)
    s0, s1 = power[..., 0], 0.5 * (power[..., 1] + power[..., 2])
    k1 = 2 * math.pi / side
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(s1 > 0, s0 / s1, np.nan)
    return np.sqrt(np.clip(ratio - 1.0, 0.0, None)) / (2 * math.sin(k1 / 2))
