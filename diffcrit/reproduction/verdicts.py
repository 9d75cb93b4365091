"""Verdicts of the reproduce battery (docs/reproduce.md): pure functions, numbers in, ``(verdict, reason)`` out.

Each claim is a test that can come out either way: ``confirmed`` (the measurement agrees with the prediction within
its interval and the stated tolerance), ``refuted`` (it disagrees beyond them) or ``inconclusive`` (not measured, or
an interval too wide to tell), always with the reason in words.
"""

from __future__ import annotations

from typing import Mapping, Sequence

CONFIRMED, REFUTED, INCONCLUSIVE = "confirmed", "refuted", "inconclusive"
VERDICTS = (CONFIRMED, REFUTED, INCONCLUSIVE)

Interval = Sequence[float] | None
Verdict = tuple[str, str]


def fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def fmt_interval(ci95: Interval) -> str:
    return "n/a" if ci95 is None else f"[{fmt(ci95[0])}, {fmt(ci95[1])}]"


def _bounds(value: float, ci95: Interval) -> tuple[float, float]:
    return (float(ci95[0]), float(ci95[1])) if ci95 is not None else (value, value)


def _gap(low: float, high: float, prediction: float, tol: float) -> float:
    """How far [low, high] lies from [prediction - tol, prediction + tol]: positive when apart, else <= 0."""
    return max(prediction - tol - high, low - prediction - tol)


def verdict_within(measured: float | None, ci95: Interval, prediction: float | None, tol: float,
                   missing: str = "not measured") -> Verdict:
    """Agreement within ``tol``, as an equivalence test: confirmed when the whole ci95 (the measured value when there
    is none) lies within ``prediction`` ± ``tol``; refuted when it lies wholly outside; inconclusive when it reaches
    both (a wide interval confirms nothing: over 4 disjoint ranges of the quick battery, the rule that confirmed
    whenever the widened interval held the prediction turned confirmed into refuted on 3 claims,
    bench/reproduce_ranges.py), or when either is missing (``missing`` says why)."""
    if prediction is None:
        return INCONCLUSIVE, "no prediction"
    if measured is None:
        return INCONCLUSIVE, missing
    low, high = _bounds(measured, ci95)
    where = f"{fmt(prediction)} vs measured {fmt(measured)} (ci95 {fmt_interval((low, high))}, tolerance {fmt(tol)})"
    if prediction - tol <= low and high <= prediction + tol:
        return CONFIRMED, f"the interval lies within the prediction ± tolerance: {where}"
    off = _gap(low, high, prediction, tol)
    if off > 0:
        return REFUTED, f"the interval lies outside the prediction ± tolerance, by {fmt(off)}: {where}"
    return INCONCLUSIVE, f"the interval reaches both within and beyond the tolerance (more samples would tell): {where}"


def verdict_bracketed(located: float | None, bracket: Interval, prediction: float | None, tol: float) -> Verdict:
    """A deterministic localisation (no sampling: a run at y = 0), ``bracket`` the probed points either side of the
    located event: confirmed when the bracket widened by ``tol`` holds ``prediction``, refuted when it does not."""
    if prediction is None:
        return INCONCLUSIVE, "no prediction"
    if located is None:
        return INCONCLUSIVE, "not located"
    low, high = _bounds(located, bracket)
    where = f"{fmt(prediction)} vs located {fmt(located)} (between probed points {fmt_interval((low, high))}, " \
            f"tolerance {fmt(tol)})"
    off = _gap(low, high, prediction, tol)
    if off <= 0:
        return CONFIRMED, f"the prediction lies between the probed points around it: {where}"
    return REFUTED, f"the prediction lies outside the bracket by {fmt(off)}: {where}"


def _measured(value: float | None, ci95: Interval, margin: float, what: str) -> tuple[float, float, str] | None:
    """The interval's bounds and its description against ``margin``; None when nothing was measured."""
    if value is None or ci95 is None:
        return None
    low, high = _bounds(value, ci95)
    return low, high, f"{what} {fmt(value)}, ci95 {fmt_interval((low, high))}, margin {fmt(margin)}"


def verdict_above(value: float | None, ci95: Interval, margin: float, what: str) -> Verdict:
    """A positive claim that ``what`` exceeds ``margin``: confirmed when the ci95 lies above it, refuted when below
    it, inconclusive when the interval holds it."""
    measured = _measured(value, ci95, margin, what)
    if measured is None:
        return INCONCLUSIVE, f"{what} not measured"
    low, high, where = measured
    if low > margin:
        return CONFIRMED, f"interval above the margin: {where}"
    if high < margin:
        return REFUTED, f"interval below the margin: {where}"
    return INCONCLUSIVE, f"interval holds the margin (more samples would tell): {where}"


def verdict_below(value: float | None, ci95: Interval, margin: float, exclude: float, what: str) -> Verdict:
    """A negative claim (no effect): refuted when the ci95 lies above ``margin`` (an effect is evidenced),
    confirmed when it lies below ``exclude`` (an effect that large is ruled out), inconclusive between."""
    measured = _measured(value, ci95, margin, what)
    if measured is None:
        return INCONCLUSIVE, f"{what} not measured"
    low, high, where = measured
    if low > margin:
        return REFUTED, f"an effect is evidenced (interval above the margin): {where}"
    if high < exclude:
        return CONFIRMED, f"no evidence, and an effect of {fmt(exclude)} or more is ruled out: {where}"
    return INCONCLUSIVE, f"no evidence, but the interval reaches {fmt(exclude)} (too wide to rule it out): {where}"


def verdict_overlap(measured: float | None, ci95: Interval, predicted: float | None, predicted_ci95: Interval,
                    missing: str = "not measured") -> Verdict:
    """Two located times agree: confirmed when their intervals overlap, refuted when disjoint."""
    if predicted is None:
        return INCONCLUSIVE, "no prediction"
    if measured is None:
        return INCONCLUSIVE, missing
    a, b = _bounds(measured, ci95), _bounds(predicted, predicted_ci95)
    where = f"measured {fmt(measured)} {fmt_interval(a)} vs predicted {fmt(predicted)} {fmt_interval(b)}"
    if a[0] <= b[1] and b[0] <= a[1]:
        return CONFIRMED, f"intervals overlap: {where}"
    return REFUTED, f"intervals are disjoint: {where}"


def verdict_coincide(markers: Mapping[str, tuple[float, Interval] | None]) -> Verdict:
    """Markers that should coincide (name -> (t, ci95) or None when absent): refuted when two found markers have
    disjoint intervals, confirmed when every marker is found and all intervals share a point, else inconclusive."""
    found = {name: _bounds(m[0], m[1]) for name, m in markers.items() if m is not None and m[0] is not None}
    absent = [name for name in markers if name not in found]
    names = list(found)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            (a0, a1), (b0, b1) = found[a], found[b]
            if a1 < b0 or b1 < a0:
                return REFUTED, (f"{a} {fmt_interval(found[a])} and {b} {fmt_interval(found[b])} do not overlap"
                                 + (f"; not found: {', '.join(absent)}" if absent else ""))
    if len(found) < 2:
        return INCONCLUSIVE, f"fewer than two markers found (not found: {', '.join(absent) or 'none'})"
    common = (max(lo for lo, _ in found.values()), min(hi for _, hi in found.values()))
    if absent:
        return INCONCLUSIVE, (f"the markers found ({', '.join(names)}) share {fmt_interval(common)}; "
                              f"not found: {', '.join(absent)}")
    return CONFIRMED, f"every interval holds {fmt_interval(common)}"
