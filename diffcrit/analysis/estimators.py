"""Pure estimators: stiffness, Ginzburg–Landau fit, correlation lengths, ensemble observables (docs/design.md §3-§5).

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


def ginzburg_landau_fit(stiffness: np.ndarray, k2: np.ndarray,
                        sigma: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Least squares s(k) = s0 + c k^2 over the shells -> (r, kappa, xi_eq), each (...,) (docs/design.md §3).

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


def bin_power(coefficients: np.ndarray) -> np.ndarray:
    """Connected power E|F - E F|^2 over the samples of each channel and low bin (docs/design.md §4).

    coefficients: (..., N, C, Q) complex coefficients of N samples at the low bins
    (fourier.shell_coefficients) -> (..., C, Q); the batch mean is subtracted, so it is the connected
    structure factor S(k), equal to Var_i <v, field_i> for a unit plane wave v of that bin.
    """
    centred = coefficients - coefficients.mean(-3, keepdims=True)
    return (centred.real**2 + centred.imag**2).mean(-3)


def shell_power(power: np.ndarray, shell: np.ndarray, n_shells: int) -> np.ndarray:
    """Mean of ``bin_power`` (..., C, Q) over channels and each shell's bins -> (..., K): the radially
    averaged structure factor S_n, the mean of Var <v, field> over the shell's unit plane waves."""
    per_bin = power.mean(-2)
    return np.stack([per_bin[..., shell == n].mean(-1) for n in range(n_shells)], -1)


# A shell whose final samples' power is below this fraction of the largest shell power does not vary
# (the two-point mixture's constant mean field has exactly zero power outside the DC shell).
VARIES_ABOVE = 1e-8


def varying_shells(power_x0: np.ndarray) -> np.ndarray:
    """(K,) bool: shells whose final samples vary."""
    power_x0 = np.asarray(power_x0, dtype=float)
    return power_x0 > VARIES_ABOVE * max(float(power_x0.max()), 0.0) if power_x0.max() > 0 else power_x0 > 0


def decided_fraction(power_denoised: np.ndarray, power_x0: np.ndarray) -> np.ndarray:
    """f_n = S_n[D(y)] / S_n[x0] per shell, power_denoised (..., K), power_x0 (K,) (docs/design.md §5): the
    share of the final variance of the mode
    already fixed at this step (law of total variance); (..., K), NaN where the samples do not vary.

    For an exact denoiser and sampler it rises from 0 to 1 along generation; for a Gaussian field it
    is P/(P + sigma^2). Values above 1 mean D(y) varies more than the samples do (an inconsistent model).
    """
    varies = varying_shells(power_x0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(varies, power_denoised / power_x0, np.nan)


def gaussian_decided(bins_x0: np.ndarray, bin_shell: np.ndarray, sigma: np.ndarray, n_shells: int) -> np.ndarray:
    """f_G: the decided fraction a Gaussian field with the final samples' spectrum would have (docs/design.md §7).

    Every bin j and channel of a Gaussian field decides on its own, P_j / (P_j + sigma^2); a shell decides as
    f_G = sum_j P_j^2 / (P_j + sigma^2) / sum_j P_j over its bins and channels (the power-weighted mean, as
    ``decided_fraction`` weights them). bins_x0: (..., C, Q) ``bin_power`` of the final samples; bin_shell: (Q,);
    sigma: (S,) -> (..., S, K), NaN on a shell with no power.
    """
    power = np.asarray(bins_x0, dtype=float)
    s2 = np.asarray(sigma, dtype=float) ** 2
    out = []
    for n in range(n_shells):
        p = power[..., bin_shell == n].reshape(*power.shape[:-2], -1)  # (..., C Q_n)
        total = p.sum(-1)
        with np.errstate(divide="ignore", invalid="ignore"):  # a bin without power at sigma = 0 adds nothing
            weighted = np.nan_to_num(p[..., None, :] ** 2 / (p[..., None, :] + s2[:, None])).sum(-1)  # (..., S)
            out.append(np.where(total[..., None] > 0, weighted / total[..., None], np.nan))
    return np.stack(out, -1)


def gaussian_stiffness(power_x0: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """s_G = sigma^2 / (P_n + sigma^2): the stiffness of a Gaussian field with the samples' shell power P_n.

    power_x0: (K,); sigma: (S,) -> (S, K) (docs/design.md §5).
    """
    s2 = np.asarray(sigma, dtype=float)[:, None] ** 2
    return s2 / (np.asarray(power_x0)[None, :] + s2)


def tweedie_gain(power_denoised: np.ndarray, power_x0: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """The mean mode gain an exact denoiser must have: E_y <v, J v> = (Var <v, x0> - Var <v, D>) / sigma^2.

    From J = Cov[x0 | y] / sigma^2 and the law of total variance (docs/design.md §5); power_denoised
    (S, M), power_x0 (M,) for M modes, sigma (S,) -> (S, M).
    """
    return (np.asarray(power_x0)[None, :] - power_denoised) / np.asarray(sigma, dtype=float)[:, None] ** 2


def correlation_length(power: np.ndarray, k2: np.ndarray) -> np.ndarray:
    """Ornstein–Zernike correlation length: S(k) = S0 / (1 + xi^2 k^2) fitted over the low bins (docs/design.md §4).

    power: (..., C, Q) ``bin_power``, averaged over channels here; k2: (Q,) |k|^2 of each bin. Weighted
    least squares of 1/S_q = a + b k_q^2, each bin weighted by the inverse variance of 1/S_q (∝ S_q^2:
    S_q has a relative error independent of q), xi = sqrt(b / a) pixels. With only the DC and the
    first shell's bins this is the second-moment estimator sqrt(S(0)/S(k1) - 1) / |k1|. Returns
    (...,): NaN where undefined (no power in a bin, a <= 0 or b < 0: no decaying correlation).
    """
    power = np.asarray(power, dtype=float).mean(-2)
    with np.errstate(divide="ignore", invalid="ignore"):
        ok = np.all(np.isfinite(power) & (power > 0), axis=-1)
        safe = np.where(ok[..., None], power, 1.0)
        inverse, weight = 1.0 / safe, safe**2
        sw = weight.sum(-1)
        mean_k2 = (weight * k2).sum(-1) / sw
        mean_inv = (weight * inverse).sum(-1) / sw
        dk = k2 - mean_k2[..., None]
        b = (weight * dk * (inverse - mean_inv[..., None])).sum(-1) / (weight * dk**2).sum(-1)
        a = mean_inv - b * mean_k2
        xi = np.sqrt(b / a)
    return np.where(ok & (a > 0) & (b >= 0), xi, np.nan)


def point_stiffness(gains: np.ndarray, shell: np.ndarray, n_shells: int) -> np.ndarray:
    """Per probe point stiffness of each shell: 1 - mean of the shell's gains; (..., P, M) -> (..., P, K)."""
    return np.stack([1.0 - gains[..., shell == n].mean(-1) for n in range(n_shells)], -1)


# A probe point counts as unstable in a shell when its stiffness is below -UNSTABLE_DEPTH: ten times
# the float32 resolution of s, above finite-difference error (~1e-4) and end-of-run round-off.
UNSTABLE_DEPTH = 10 * STIFFNESS_RESOLUTION


def unstable_fraction(point_s: np.ndarray) -> np.ndarray:
    """u_n: the share of probe points whose shell stiffness is resolved below 0 (docs/design.md §5);
    (..., P, K) -> (..., K)."""
    return (point_s < -UNSTABLE_DEPTH).mean(-2)


def fraction_ci95(unstable: int, points: int) -> tuple[float, float]:
    """Clopper–Pearson 95% interval of a share of ``unstable`` in ``points`` trajectories (docs/design.md §5): exact
    for a binomial count, and an interval (not a point) at 0 and at ``points``, where a bootstrap over the probe points
    collapses. With none unstable the upper end is 1 - 0.025^(1/P). scipy's ``binomtest(...).proportion_ci``."""
    from scipy.stats import binomtest

    interval = binomtest(int(unstable), int(points)).proportion_ci(0.95, method="exact")
    return float(interval.low), float(interval.high)


def fraction_bands(fraction: np.ndarray, points: int) -> np.ndarray:
    """``fraction_ci95`` of every entry of a share of ``points`` trajectories (..., K) -> (..., K, 2); NaN where the
    share is NaN (a step not probed). Over 12 disjoint ranges on the exact mixture this interval held the exact
    unstable share at 59 of 60 probed steps where that is at least 1e-6; a bootstrap over the probe points, at 42
    (bench/instability_coverage.py)."""
    out = np.full((*fraction.shape, 2), np.nan)
    for index in np.argwhere(np.isfinite(fraction)):
        index = tuple(index)
        out[index] = fraction_ci95(round(float(fraction[index]) * points), points)
    return out


# The power with which a share of unstable trajectories counts as detectable (docs/design.md §5).
DETECTION_POWER = 0.8


def detectable_fraction(points: int, power: float = DETECTION_POWER) -> float:
    """The smallest share u of unstable trajectories that P probe points show (at least one unstable point at a
    probed step) with probability ``power``: 1 - (1 - u)^P >= power, u = 1 - (1 - power)^(1/P)."""
    return 1.0 - (1.0 - power) ** (1.0 / points)


def clone_fraction(coef_a: np.ndarray, coef_b: np.ndarray, bin_shell: np.ndarray, n_shells: int) -> np.ndarray:
    """(K,) correlation of two clones' final low modes per shell (docs/design.md §5, ``--clones``):
    Re sum Cov(a, b) / (1/2) sum (Var a + Var b) over the shell's bins and channels, variances over the
    N trunk samples; coef: (N, C, Q) complex. NaN where the clones do not vary."""
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
