"""A jump of the correlation length (docs/design.md §4a): pure, arrays in, a ``Jump`` or None out.

Notation: t (N,) the probed points' times in generation order (t decreasing), xi (N,) the correlation
length there (NaN where undefined; such points are dropped). ``window`` w in t, ``factor`` J.

- onset: the first point i whose xi is at least J times some xi within the w of generation before it,
  ``xi_i >= J min{xi_j : t_i < t_j <= t_i + w}`` (that set not empty): xi grew J-fold within w;
- location t*: the largest xi among the points from the onset to w later (``t_i - w <= t_j <= t_i``): a
  divergence (xi_eq = sqrt(c/|s0|) at s0 = 0) peaks there, a step lands on its plateau;
- interval: from the point after t* to the point before the onset: the singularity lies between probed points.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

JUMP_FACTOR = 2.0  # J: xi at least doubles ...
JUMP_WINDOW = 0.5  # w: ... within half a unit of t (a Gaussian field's xi_eq changes by at most ~e^{w/2})
# A divergence xi ~ |t - t_c|^(-1/2) (xi_eq where s0 crosses 0) grows J-fold within w only at points within
# w / (J^2 - 1) of t_c: probed points farther apart than this around t_c cannot tell a jump from none.
JUMP_RESOLUTION = JUMP_WINDOW / (JUMP_FACTOR**2 - 1)


@dataclass(frozen=True)
class Jump:
    t: float  # t* (the peak after the onset)
    ci95: tuple[float, float]  # (low, high) in t: the probed points either side
    factor: float  # xi(t*) over the smallest xi within w before the onset
    onset_t: float


def _valid(t: np.ndarray, xi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Defined points in generation order (t decreasing)."""
    t, xi = np.asarray(t, float), np.asarray(xi, float)
    keep = np.isfinite(t) & np.isfinite(xi) & (xi > 0)
    order = np.argsort(-t[keep], kind="stable")
    return t[keep][order], xi[keep][order]


def rise_factors(t: np.ndarray, xi: np.ndarray, window: float = JUMP_WINDOW) -> np.ndarray:
    """Per defined point (generation order): xi over the smallest xi within ``window`` before it; NaN where
    no earlier point lies that close."""
    t, xi = _valid(t, xi)
    out = np.full(len(t), np.nan)
    for i in range(len(t)):
        before = (t > t[i]) & (t <= t[i] + window)
        if before.any():
            out[i] = xi[i] / xi[before].min()
    return out


def largest_rise(t: np.ndarray, xi: np.ndarray, window: float = JUMP_WINDOW) -> float | None:
    """The largest rise factor of ``rise_factors`` (None where no point has an earlier one within window)."""
    rises = rise_factors(t, xi, window)
    return float(np.nanmax(rises)) if np.isfinite(rises).any() else None


def gap_around(t: np.ndarray, at: float) -> float | None:
    """The distance in t between the defined points either side of ``at`` (None when ``at`` is not inside them)."""
    t = np.asarray(t, float)
    t = t[np.isfinite(t)]
    above, below = t[t >= at], t[t <= at]
    return None if len(above) == 0 or len(below) == 0 else float(above.min() - below.max())


def correlation_jump(t: np.ndarray, xi: np.ndarray, factor: float = JUMP_FACTOR,
                     window: float = JUMP_WINDOW) -> Jump | None:
    """The first jump of xi(t) (module docstring), or None when xi never rises by ``factor`` within ``window``."""
    rises = rise_factors(t, xi, window)
    t, xi = _valid(t, xi)
    onsets = np.flatnonzero(np.nan_to_num(rises, nan=0.0) >= factor)
    if len(onsets) == 0:
        return None
    i = int(onsets[0])
    after = np.flatnonzero((t >= t[i] - window) & (t <= t[i]))
    peak = int(after[np.argmax(xi[after])])
    before = (t > t[i]) & (t <= t[i] + window)
    low = float(t[min(peak + 1, len(t) - 1)])
    high = float(t[max(i - 1, 0)])
    return Jump(t=float(t[peak]), ci95=(low, high), factor=float(xi[peak] / xi[before].min()), onset_t=float(t[i]))
