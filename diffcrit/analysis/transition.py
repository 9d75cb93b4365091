"""Is it a transition? Each shell's decided fraction against its Gaussian null (docs/design.md §6a).

A decided fraction crosses 1/2 for every distribution: that is a crossover (speciation) time, not yet a
phase transition. The null hypothesis is a Gaussian field with the final samples' spectrum. A symmetry-breaking
transition decides faster: its decided fraction runs ahead of the null's once the null is half decided
(two-point mixture: by up to 0.13; with within-class noise of 1/16 of the class separation: by up to 0.08).

The null's decided fraction is *sampled* (sampling/null.py): the exact Gaussian denoiser run through the model's
own sampler, steps and seeds, so the sampler's discretisation error and noise are in the null as in the model.
Where the sampler cannot run it (learned variance), it is the *formula* ``estimators.gaussian_decided`` compared
SAMPLER_ALLOWANCE local steps ahead in t (Euler's decided fraction is the exact one 0.28 steps earlier).

Statistic ``excess_over_gaussian`` of a shell: the mean over the steps where the null is between NULL_WINDOW[0]
and NULL_WINDOW[1] decided of ``decided - null``. Evidence: its basic bootstrap ci95 lies above EVIDENCE_MARGIN,
calibrated on Gaussian fields of three spectra, disjoint sample ranges, 25/50/100 steps, Euler and DDPM sampling
(bench/transition_calibration.py).

Arrays: t (S,) in generation order (decreasing), decided and null (S,) per shell; pure functions.
"""

from __future__ import annotations

import numpy as np

STATISTIC = "excess_over_gaussian"
# The null the excess is taken over: the Gaussian sampled by the model's own sampler (sampling/null.py), or, where
# that sampler cannot run it, the formula f_G compared half a step ahead (SAMPLER_ALLOWANCE).
SAMPLED_NULL, FORMULA_NULL = "sampled", "formula"
# The null's decided fraction between these levels: where a two-point split runs ahead of a Gaussian mode
# (its largest excess sits where the null is 3/4 decided); below 1/2 both rise as the linear response a/(1+a).
NULL_WINDOW = (0.6, 0.95)
# The sampler may place the curve up to this many local steps off in t (its first-order error; Euler: 0.28).
SAMPLER_ALLOWANCE = 0.5
# Evidence of a transition: the statistic's ci95 lies above this. Calibrated on Gaussian fields (xi 1.5, 4, 8 px;
# 32-128 samples; 25/50/100 steps; disjoint ranges): the largest lower bound was 0.010 over the 264 shell-runs of
# bench/results/transition-calibration.json, 0.014 over 253 more at 20-100 steps in the exploration before it.
EVIDENCE_MARGIN = 0.015
# At least this many steps inside the null window, or the statistic is undefined (None).
MIN_WINDOW_STEPS = 3


def local_step(t: np.ndarray) -> np.ndarray:
    """(S,) the width in t of each step: half the distance between its neighbours (one-sided at the ends)."""
    t = np.asarray(t, dtype=float)
    if len(t) < 2:
        return np.zeros_like(t)
    gaps = np.abs(np.diff(t))
    return 0.5 * (np.append(gaps, gaps[-1]) + np.insert(gaps, 0, gaps[0]))


def allowed_shift(t: np.ndarray, allowance: float = SAMPLER_ALLOWANCE) -> np.ndarray:
    """(S,) the sampler allowance delta in t at each step: ``allowance`` local steps."""
    return allowance * local_step(t)


def excess_over_null(t: np.ndarray, decided: np.ndarray, null_now: np.ndarray, null_earlier: np.ndarray,
                     keep: np.ndarray | None = None) -> float | None:
    """The statistic of one shell: mean of ``decided - null_earlier`` over the steps where ``null_now`` lies in
    NULL_WINDOW (and ``keep``); None with fewer than MIN_WINDOW_STEPS such steps.

    null_now: f_G at each step's t; null_earlier: f_G at t - delta (``allowed_shift``), the null as far ahead
    as the sampler's error allows. All (S,) along the same steps; NaN entries are skipped.
    """
    decided, null_now, null_earlier = (np.asarray(a, dtype=float) for a in (decided, null_now, null_earlier))
    window = (null_now >= NULL_WINDOW[0]) & (null_now <= NULL_WINDOW[1]) & np.isfinite(decided) \
        & np.isfinite(null_earlier)
    if keep is not None:
        window &= keep
    if window.sum() < MIN_WINDOW_STEPS:
        return None
    return float(np.mean(decided[window] - null_earlier[window]))


def verdict(value: float | None, draws: list[float | None], shell: int) -> dict:
    """One shell's entry of the ``transition`` list: the statistic, its bootstrap ci95 and whether it is evidence
    of a transition.

    The interval is the basic (reverse percentile) bootstrap interval [2v - q97.5, 2v - q2.5] over the resamples
    where the statistic is defined: it corrects the plug-in bias of the null (f_G is concave in each bin's
    estimated power, so a null built from few samples reads low; the resamples add the same bias again), which
    made percentile intervals of Gaussian fields lie above 0 at 32 samples."""
    found = np.array([d for d in draws if d is not None], dtype=float)
    ci95 = None
    if value is not None and found.size >= 2:
        low, high = np.percentile(found, [2.5, 97.5])
        ci95 = [float(2 * value - high), float(2 * value - low)]
    evidence = value is not None and ci95 is not None and ci95[0] > EVIDENCE_MARGIN
    return {"shell": shell, "evidence": bool(evidence), "statistic": STATISTIC, "value": value, "ci95": ci95,
            "null_value": 0.0, "margin": EVIDENCE_MARGIN}


def strongest(entries: list[dict]) -> dict | None:
    """The entry with evidence whose ci95 lies furthest above the margin (None if no shell shows evidence)."""
    with_evidence = [e for e in entries if e["evidence"]]
    return max(with_evidence, key=lambda e: e["ci95"][0]) if with_evidence else None


def widen_band(t: np.ndarray, band: np.ndarray, delta: np.ndarray) -> np.ndarray:
    """A per-step ci95 band (S, K, 2) widened to hold the curve anywhere within ``delta`` (S,) in t of each step:
    the lower edge is the least of the band's lower edges at t - delta, t and t + delta (linear in t between
    steps), the upper edge the greatest. The sampler's discretisation error in t becomes part of the interval."""
    t = np.asarray(t, dtype=float)
    order = np.argsort(t)
    out = band.copy()
    for k in range(band.shape[1]):
        lo, hi = band[:, k, 0], band[:, k, 1]
        if not (np.isfinite(lo).all() and np.isfinite(hi).all()):
            continue
        moved = [(np.interp(t + d, t[order], lo[order]), np.interp(t + d, t[order], hi[order]))
                 for d in (-delta, delta)]
        out[:, k, 0] = np.minimum.reduce([lo] + [m[0] for m in moved])
        out[:, k, 1] = np.maximum.reduce([hi] + [m[1] for m in moved])
    return out
