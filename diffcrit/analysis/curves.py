"""Per-step curves from a run's records (docs/design.md §3-§5), on the samples or on a bootstrap resample,
the consistent steps and the decision shell."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from ..spectral.fourier import LowBins, ProbeDirections
from . import estimators
from .detection import CONSISTENT_BELOW
from .records import Records


@dataclass
class Curves:
    """Per-step curves (S,) or (S, K), NaN where undefined (docs/design.md §3-§5)."""

    stiffness: np.ndarray
    stiffness_sem: np.ndarray
    r: np.ndarray
    kappa: np.ndarray
    xi_eq: np.ndarray
    xi_state: np.ndarray
    xi_denoised: np.ndarray
    power_state: np.ndarray  # (S, K) connected shell power of y
    power_denoised: np.ndarray  # (S, K) of D(y)
    power_final: np.ndarray  # (K,) of the final samples x0
    decided: np.ndarray  # (S, K) decided fraction
    unstable: np.ndarray  # (S, K) instability fraction, NaN where not probed
    bins_denoised: np.ndarray  # (S, C, Q) connected power of D(y) per channel and low bin
    bins_final: np.ndarray  # (C, Q) of the final samples
    gaussian_decided: np.ndarray  # (S, K) the decided fraction of a Gaussian field of the samples' spectrum
    null_decided: np.ndarray | None  # (S, K) that Gaussian's decided fraction through the model's own sampler
    clones: np.ndarray  # (G, K) clone correlation at the G branch steps of --clones (G = 0 without)


def compute_curves(records: Records, directions: ProbeDirections, probe_rows: np.ndarray | None = None,
                   sample_rows: np.ndarray | None = None) -> Curves:
    """Curves from the records, optionally on a resample of the probe points and of the samples."""
    n_steps, k = len(records.infos), directions.n_shells
    sigma = np.array([info.sigma for info in records.infos])
    stiffness, sem, unstable = (np.full((n_steps, k), np.nan) for _ in range(3))
    probed = [i for i, g in enumerate(records.gains) if g is not None]
    shell = records.shell_of_gains(directions.shell.numpy())
    if probed:
        gains = np.stack([records.gains[i] for i in probed])  # (S', P, M)
        if probe_rows is not None:
            gains = gains[:, probe_rows]
        stiffness[probed], sem[probed] = estimators.shell_stiffness(gains, shell, k)
        if records.trajectories:  # a share of trajectories; at y = 0 there is one point and no share
            unstable[probed] = estimators.unstable_fraction(estimators.point_stiffness(gains, shell, k))
    k2 = np.array([float(directions.k2[directions.shell == n].mean()) for n in range(k)])
    r, kappa, xi_eq = np.full(n_steps, np.nan), np.full(n_steps, np.nan), np.full(n_steps, np.nan)
    if probed:
        r[probed], kappa[probed], xi_eq[probed] = estimators.ginzburg_landau_fit(stiffness[probed], k2, sigma[probed])
    coef_state, coef_denoised = np.stack(list(records.coef_state)), np.stack(list(records.coef_denoised))
    coef_final = records.coef_final
    if sample_rows is not None:
        coef_state, coef_denoised = coef_state[:, sample_rows], coef_denoised[:, sample_rows]
        coef_final = coef_final[sample_rows]
    bin_shell, bin_k2 = records.bins.shell.numpy(), records.bins.k2.numpy()
    bins_state, bins_denoised, bins_final = (estimators.bin_power(c) for c in (coef_state, coef_denoised, coef_final))
    power_state, power_denoised, power_final = (estimators.shell_power(p, bin_shell, k)
                                                for p in (bins_state, bins_denoised, bins_final))
    rows = slice(None) if sample_rows is None else sample_rows
    clones = np.array([estimators.clone_fraction(a[rows], b[rows], bin_shell, k)
                       for a, b in (records.clone_coefs[s] for s in sorted(records.clone_coefs))]).reshape(-1, k)
    return Curves(stiffness, sem, r, kappa, xi_eq,
                  estimators.correlation_length(bins_state, bin_k2),
                  estimators.correlation_length(bins_denoised, bin_k2),
                  power_state, power_denoised, power_final,
                  estimators.decided_fraction(power_denoised, power_final), unstable,
                  bins_denoised, bins_final,
                  estimators.gaussian_decided(bins_final, bin_shell, sigma, k), _null_decided(records, rows, k),
                  clones)


def _null_decided(records: Records, rows, n_shells: int) -> np.ndarray | None:
    """The sampled Gaussian null's decided fraction (S, K) on the same resample of the samples (the null ran on
    the same seeds: rows pair), or None where no null was sampled."""
    if records.null_final is None:
        return None
    shell = records.bins.shell.numpy()
    denoised = np.stack(list(records.null_denoised))[:, rows]
    power = [estimators.shell_power(estimators.bin_power(c), shell, n_shells)
             for c in (denoised, records.null_final[rows])]
    return estimators.decided_fraction(*power)


# Below this many samples a variance ratio has a relative error of 50% or more (sqrt(2 / N)): no
# step is judged inconsistent.
CONSISTENCY_MIN_SAMPLES = 8


def consistent_steps(curves: Curves, n_samples: int) -> np.ndarray:
    """(S,) bool: steps whose decided fraction is at most CONSISTENT_BELOW on every varying shell."""
    if n_samples < CONSISTENCY_MIN_SAMPLES:
        return np.ones(len(curves.decided), dtype=bool)
    varies = estimators.varying_shells(curves.power_final)
    decided = np.nan_to_num(curves.decided[:, varies], nan=0.0)
    return (decided <= CONSISTENT_BELOW).all(1)


# The decision shell must hold at least this many FFT bins per channel when a varying shell does:
# the DC shell holds one, so its decided fraction rests on one degree of freedom per sample and its
# crossing moved 3x more between disjoint reseeds of builtin:textures than shell 1's (8 bins).
DECISION_MIN_BINS = 4


def decision_shell(curves: Curves, bins: LowBins, requested: int | None = None) -> int | None:
    """The shell of ``decision`` and ``instability_onset`` (docs/design.md §6): ``requested`` if given
    (None when its samples do not vary), else the lowest varying shell with at least DECISION_MIN_BINS
    bins, else the lowest varying shell (the two-point mixture varies in its DC shell only)."""
    varies = estimators.varying_shells(curves.power_final)
    if requested is not None:
        return requested if requested < len(varies) and varies[requested] else None
    counts = np.bincount(bins.shell.numpy(), minlength=len(varies))
    wide = np.flatnonzero(varies & (counts >= DECISION_MIN_BINS))
    narrow = np.flatnonzero(varies)
    return int(wide[0]) if wide.size else (int(narrow[0]) if narrow.size else None)


def bootstrap_curves(records: Records, directions: ProbeDirections, repeats: int, seed: int):
    """``repeats`` resamples (with replacement) of the samples and of the probe points -> list of Curves."""
    rng = np.random.default_rng(seed)
    n_points = next((g.shape[0] for g in records.gains if g is not None), 0)
    n_samples = records.coef_state[0].shape[0]
    out = []
    for _ in range(repeats):
        probe_rows = rng.integers(0, n_points, n_points) if n_points > 1 else None
        sample_rows = rng.integers(0, n_samples, n_samples)
        out.append(compute_curves(records, directions, probe_rows, sample_rows))
    return out


def curve_band(resamples: list[Curves], name: str) -> np.ndarray | None:
    """(S, K, 2) percentile ci95 of a curve (S, K) over the bootstrap resamples (NaN where undefined)."""
    if not resamples:
        return None
    stack = np.stack([getattr(c, name) for c in resamples])
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.moveaxis(np.nanpercentile(stack, [2.5, 97.5], axis=0), 0, -1)
