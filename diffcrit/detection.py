"""Critical-time markers and their consensus (DESIGN.md §5).

Curves are given in generation order (t decreasing). Each marker is an interior feature of its
curve: a feature at the first or last point is no marker. Missing values (NaN: a step that
was not probed, an undefined xi_eq) are skipped.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from .estimators import STIFFNESS_RESOLUTION

STIFFNESS_ZERO = "stiffness_zero"
STIFFNESS_MIN = "stiffness_min"
XI_EQ_PEAK = "xi_eq_peak"
XI_GROWTH = "xi_growth"
MARKERS = (STIFFNESS_ZERO, STIFFNESS_MIN, XI_EQ_PEAK, XI_GROWTH)

# An interior extremum counts only if it stands out above both ends of its curve by this
# fraction of the curve's range: a monotone curve with a noisy plateau (float32 round-off in
# s = 1 - g at small sigma) has no marker.
PROMINENCE = 0.05
# A stiffness dip must also be deeper than this, in absolute terms: ten times the float32
# resolution of s (estimators.STIFFNESS_RESOLUTION). Below it a "dip" is round-off and
# finite-difference error (up to ~1e-4 against forward AD), found on random-weight networks.
STIFFNESS_DIP_FLOOR = 10 * STIFFNESS_RESOLUTION


def _valid(t: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    keep = np.isfinite(values)
    return t[keep], values[keep]


def zero_crossing(s: np.ndarray, resolution: float = STIFFNESS_RESOLUTION) -> int | None:
    """Index j of the first resolved downward crossing of 0 (it lies between points j and j + 1).

    Resolved: s has been above +resolution before it falls below -resolution; j is the last
    point with s >= 0 before the fall. Round-off wobble of a stiffness near 0 is no crossing.
    """
    for i in np.flatnonzero(s < -resolution):
        if (s[:i] > resolution).any():
            return int(np.flatnonzero(s[:i] >= 0)[-1])
    return None


def stiffness_zero(t: np.ndarray, s_low: np.ndarray, resolution: float = STIFFNESS_RESOLUTION) -> float | None:
    """Earliest t (generation order) where s crosses below 0 (zero_crossing), linear in t between
    the two points around it."""
    t, s = _valid(t, s_low)
    j = zero_crossing(s, resolution)
    if j is None:
        return None
    return float(t[j] + (t[j + 1] - t[j]) * s[j] / (s[j] - s[j + 1]))


def _interior_argextreme(values: np.ndarray, sign: float, floor: float = 0.0) -> int | None:
    """Index of the interior extremum (max of sign * values), or None at an end or not prominent:
    it must stand out above both ends by PROMINENCE of the range and by more than ``floor``."""
    if len(values) < 3:
        return None
    oriented = sign * values
    i = int(np.argmax(oriented))
    if not 0 < i < len(values) - 1:
        return None
    span = oriented.max() - oriented.min()
    return i if oriented[i] - max(oriented[0], oriented[-1]) > max(PROMINENCE * span, floor) else None


def refine_extremum(t: np.ndarray, values: np.ndarray, i: int) -> float:
    """t of the vertex of the parabola through points i-1, i, i+1 (kept within their span)."""
    t3, v3 = t[i - 1 : i + 2], values[i - 1 : i + 2]
    a, b, _ = np.polyfit(t3 - t3[1], v3, 2)
    if a == 0:
        return float(t3[1])
    vertex = t3[1] - b / (2 * a)
    return float(np.clip(vertex, min(t3[0], t3[2]), max(t3[0], t3[2])))


def stiffness_min(t: np.ndarray, s_low: np.ndarray) -> float | None:
    """t of the interior minimum of the lowest-shell stiffness (parabolic sub-step refinement),
    at least STIFFNESS_DIP_FLOOR deep."""
    t, s = _valid(t, s_low)
    i = _interior_argextreme(s, -1.0, STIFFNESS_DIP_FLOOR)
    return None if i is None else refine_extremum(t, s, i)


def xi_eq_peak(t: np.ndarray, xi_eq: np.ndarray) -> float | None:
    """t of the interior maximum of the dispersion correlation length (parabolic refinement)."""
    t, xi = _valid(t, xi_eq)
    i = _interior_argextreme(xi, 1.0)
    return None if i is None else refine_extremum(t, xi, i)


def xi_growth(t: np.ndarray, xi_denoised: np.ndarray) -> float | None:
    """t of the interior maximum of d xi / d(-ln sigma), the growth of xi(D(y)) along generation.

    Rates are taken per unit ln sigma (the natural step measure of noise schedules): per unit t
    they would blow up as 1/sigma^2 at small sigma (dt = 2 sigma^2/(1 + sigma^2) d ln sigma) and
    any round-off wobble of xi there would win. Rates sit at the midpoints (in ln sigma) of
    consecutive steps; the maximum must be a growth (rate > 0).
    """
    t, xi = _valid(t, xi_denoised)
    if len(xi) < 4:
        return None
    log_sigma = 0.5 * np.log(np.expm1(t))
    rates = np.diff(xi) / -np.diff(log_sigma)
    i = _interior_argextreme(rates, 1.0)
    if i is None or rates[i] <= 0:
        return None
    middle = refine_extremum(0.5 * (log_sigma[1:] + log_sigma[:-1]), rates, i)
    return float(np.log1p(np.exp(2 * middle)))


def find_markers(t: np.ndarray, s_low: np.ndarray, xi_eq: np.ndarray, xi_denoised: np.ndarray) -> dict[str, float | None]:
    """All four markers (t values or None)."""
    return {
        STIFFNESS_ZERO: stiffness_zero(t, s_low),
        STIFFNESS_MIN: stiffness_min(t, s_low),
        XI_EQ_PEAK: xi_eq_peak(t, xi_eq),
        XI_GROWTH: xi_growth(t, xi_denoised),
    }


def consensus(markers: dict[str, float | None]) -> float | None:
    """critical t = median of the markers present."""
    present = [v for v in markers.values() if v is not None]
    return float(np.median(present)) if present else None


def bootstrap_interval(estimate: Callable[[np.random.Generator], float | None], repeats: int,
                       seed: int, level: float = 0.95) -> tuple[float, float] | None:
    """Percentile interval of ``estimate(rng)`` over ``repeats`` resamples (None results skipped)."""
    rng = np.random.default_rng(seed)
    values = [v for v in (estimate(rng) for _ in range(repeats)) if v is not None]
    if len(values) < max(10, repeats // 4):
        return None
    tail = 100 * (1 - level) / 2
    lo, hi = np.percentile(values, [tail, 100 - tail])
    return float(lo), float(hi)


def locate(t_value: float, t_steps: np.ndarray) -> tuple[int, float]:
    """(nearest step index, fraction of the way through generation) of a t on the step grid.

    t_steps is decreasing; the fractional position is linear in t between neighbouring steps.
    """
    n = len(t_steps)
    position = float(np.interp(-t_value, -t_steps, np.arange(n)))
    return int(round(position)), position / (n - 1)
