"""Critical-time markers, the primary marker of each regime, and bootstrap summaries (docs/design.md §6).

Curves are given in generation order (t decreasing). Each marker is an interior or threshold
feature of its curve: a feature at the first or last point is no marker. Missing values (NaN: a
step that was not probed, an undefined xi, a step whose x0 estimate is inconsistent) are skipped.

critical.t is one primary marker per regime, never a median of markers of different meaning:
  trajectory  ``decision``: the decided fraction of the decision shell crosses 1/2 — it uses every
              sample at no extra cost, has exact references (Gaussian: t = log(1 + P(k)); mixture:
              E tanh^2), and was the only marker stable over disjoint sample ranges on the trained
              built-ins (docs/design.md, "Choosing the primary marker");
  zero        ``stiffness_zero``: the linearisation at y = 0 has the exact t_c = log(1 + |m|^2) of
              the mixture and log(1 + C_Omega(0)) of the patch model.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import isotonic_regression

from .estimators import STIFFNESS_RESOLUTION

STIFFNESS_ZERO = "stiffness_zero"
STIFFNESS_MIN = "stiffness_min"
XI_EQ_PEAK = "xi_eq_peak"
XI_GROWTH = "xi_growth"
DECISION = "decision"
INSTABILITY_ONSET = "instability_onset"
MARKERS = (DECISION, INSTABILITY_ONSET, STIFFNESS_ZERO, STIFFNESS_MIN, XI_EQ_PEAK, XI_GROWTH)
PRIMARY = {"trajectory": DECISION, "zero": STIFFNESS_ZERO}

# The decided fraction at which a mode counts as decided: half of its final variance fixed
# (for a Gaussian mode at t = log(1 + P(k)), the speciation time of Biroli et al. 2024).
DECIDED_LEVEL = 0.5

# A step whose decided fraction exceeds this on a shell whose samples vary has an x0 estimate D(y)
# that varies more across samples than the samples themselves (law of total variance broken,
# docs/design.md §5): the model's denoiser is unreliable there and the step is kept out of the markers.
CONSISTENT_BELOW = 1.25

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


def decision(t: np.ndarray, decided: np.ndarray, level: float = DECIDED_LEVEL) -> float | None:
    """t (generation order) where the decided fraction crosses ``level``, linear in t between the two
    steps around the crossing; None unless it starts below and ends above.

    The crossing is read off the monotone (isotonic, non-decreasing in generation order) least-squares
    fit of the curve: Var E[x0 | y] can only grow along generation (E[x0 | y_t] is a martingale of the
    reverse process), so wiggles of a finite-sample curve are noise and one crossing is the model's.
    """
    found = _crossing(t, decided, level)
    if found is None:
        return None
    t, fit, j = found
    return float(t[j] + (t[j + 1] - t[j]) * (level - fit[j]) / (fit[j + 1] - fit[j]))


def decision_bracket(t: np.ndarray, decided: np.ndarray, level: float = DECIDED_LEVEL) -> tuple[float, float] | None:
    """The two steps (their t) between which ``decision`` interpolates; None where it finds no crossing."""
    found = _crossing(t, decided, level)
    return None if found is None else (float(found[0][found[2]]), float(found[0][found[2] + 1]))


def _crossing(t: np.ndarray, decided: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray, int] | None:
    """(valid t, isotonic fit, j): the fit crosses ``level`` between steps j and j + 1; None without a crossing."""
    t, f = _valid(t, decided)
    if len(f) < 2:
        return None
    fit = isotonic_regression(f).x
    above = np.flatnonzero((fit[1:] >= level) & (fit[:-1] < level))
    return None if above.size == 0 else (t, fit, int(above[0]))


def instability_onset(t: np.ndarray, unstable: np.ndarray) -> float | None:
    """Earliest t at which the instability fraction is resolved above 0: the midpoint (in t) of the
    last probed step with none unstable and the first with some; none if that is the first or the
    last probed step (no onset seen, or end-of-run round-off)."""
    t, u = _valid(t, unstable)
    positive = np.flatnonzero(u > 0)
    if positive.size == 0 or positive[0] == 0 or positive[0] == len(u) - 1:
        return None
    j = int(positive[0])
    return float(0.5 * (t[j - 1] + t[j]))


def onset_bracket(t: np.ndarray, unstable: np.ndarray) -> tuple[float, float]:
    """(t of the last probed step with none unstable, t of the first with some) around ``instability_onset``."""
    t, u = _valid(t, unstable)
    j = int(np.flatnonzero(u > 0)[0])
    return float(t[j - 1]), float(t[j])


def extremum_bracket(t: np.ndarray, values: np.ndarray, sign: float, floor: float = 0.0) -> tuple[float, float]:
    """(t, t) of the probed points either side of the interior extremum (``_interior_argextreme``): the
    extremum of a curve with one extremum there lies between them, however coarse the probed steps."""
    t, v = _valid(t, values)
    i = _interior_argextreme(v, sign, floor)
    assert i is not None, "no interior extremum"
    return float(t[i - 1]), float(t[i + 1])


def find_brackets(t: np.ndarray, s_low: np.ndarray, xi_eq: np.ndarray, unstable: np.ndarray | None,
                  markers: dict[str, float | None]) -> dict[str, tuple[float, float]]:
    """The probed steps that bound each found probe-based marker (find_markers' ``markers``): the marker
    lies between them, so its interval holds them (docs/design.md §6). The auto probe schedule
    (schedule.py) shrinks the brackets of instability_onset and stiffness_zero to one step."""
    out: dict[str, tuple[float, float]] = {}
    if markers.get(INSTABILITY_ONSET) is not None and unstable is not None:
        out[INSTABILITY_ONSET] = onset_bracket(t, unstable)
    if markers.get(STIFFNESS_MIN) is not None:
        out[STIFFNESS_MIN] = extremum_bracket(t, s_low, -1.0, STIFFNESS_DIP_FLOOR)
    if markers.get(XI_EQ_PEAK) is not None:
        out[XI_EQ_PEAK] = extremum_bracket(t, xi_eq, 1.0)
    return out


def find_markers(t: np.ndarray, s_low: np.ndarray, xi_eq: np.ndarray, xi_denoised: np.ndarray,
                 decided: np.ndarray | None = None, unstable: np.ndarray | None = None) -> dict[str, float | None]:
    """Every marker (t values or None); ``decided`` and ``unstable`` are the decision shell's curves."""
    nan = np.full(len(t), np.nan)
    return {
        DECISION: decision(t, nan if decided is None else decided),
        INSTABILITY_ONSET: instability_onset(t, nan if unstable is None else unstable),
        STIFFNESS_ZERO: stiffness_zero(t, s_low),
        STIFFNESS_MIN: stiffness_min(t, s_low),
        XI_EQ_PEAK: xi_eq_peak(t, xi_eq),
        XI_GROWTH: xi_growth(t, xi_denoised),
    }


def percentile_interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Central percentile interval of bootstrap values."""
    tail = 100 * (1 - level) / 2
    lo, hi = np.percentile(values, [tail, 100 - tail])
    return float(lo), float(hi)


# Bootstrap values split into separate modes at gaps wider than MODE_GAP bandwidths (Silverman's
# rule); a mode must hold at least MODE_SHARE of the values.
MODE_GAP, MODE_SHARE = 4.0, 0.1


def bootstrap_modes(values: np.ndarray) -> list[dict]:
    """The modes of a bootstrap distribution: [{"t", "share", "ci95"}], most populated first.

    One mode for a unimodal distribution. Several modes are reported as such (docs/design.md §6): the
    percentile interval of all values then spans the gap between them and measures no location.
    """
    values = np.sort(np.asarray(values, dtype=float))
    if values.size < 2:
        return [{"t": float(v), "share": 1.0, "ci95": [float(v), float(v)]} for v in values]
    spread = min(values.std(ddof=1), (np.percentile(values, 75) - np.percentile(values, 25)) / 1.34)
    bandwidth = 0.9 * (spread if spread > 0 else values.std(ddof=1)) * values.size ** -0.2
    cuts = np.flatnonzero(np.diff(values) > MODE_GAP * bandwidth) + 1 if bandwidth > 0 else []
    groups = [g for g in np.split(values, cuts) if g.size >= MODE_SHARE * values.size] or [values]
    modes = [{"t": float(np.median(g)), "share": g.size / values.size, "ci95": list(percentile_interval(g))}
             for g in groups]
    return sorted(modes, key=lambda m: -m["share"])


def summarize_bootstrap(values: list[float | None], level: float = 0.95) -> dict:
    """presence (share of resamples with the marker), ci95 of the found values, and their modes."""
    found = np.array([v for v in values if v is not None], dtype=float)
    presence = found.size / len(values) if values else 0.0
    if found.size < 2:
        return {"presence": presence, "ci95": None, "modes": None}
    modes = bootstrap_modes(found)
    return {"presence": presence, "ci95": list(percentile_interval(found, level)),
            "modes": modes, "multimodal": len(modes) > 1}


def locate(t_value: float, t_steps: np.ndarray) -> tuple[int, float]:
    """(nearest step index, fraction of the way through generation) of a t on the step grid.

    t_steps is decreasing; the fractional position is linear in t between neighbouring steps.
    """
    n = len(t_steps)
    position = float(np.interp(-t_value, -t_steps, np.arange(n)))
    return int(round(position)), position / (n - 1)
