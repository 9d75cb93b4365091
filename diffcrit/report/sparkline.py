"""A one-line text curve for terminal summaries (low-k stiffness, xi along generation). Pure."""

from __future__ import annotations

import math
from typing import Iterable

BLOCKS = "▁▂▃▄▅▆▇█"
MISSING = " "


def sparkline(values: Iterable[float | None], width: int = 40, *, lo: float | None = None,
              hi: float | None = None) -> str:
    """Draw ``values`` (in the given order) as ``min(len(values), width)`` block characters.

    Longer series are averaged into ``width`` equal bins. None, NaN and inf draw as a blank.
    The scale runs from ``lo`` to ``hi`` (default: the finite min and max); values outside clamp
    to the lowest or highest block, and a flat series draws at mid height.
    """
    if width < 1:
        raise ValueError(f"width must be >= 1, got {width}")
    points = [_as_float(v) for v in values]
    if len(points) > width:
        points = [_mean(points[i * len(points) // width:(i + 1) * len(points) // width]) for i in range(width)]
    finite = [v for v in points if v is not None]
    if not finite:
        return MISSING * len(points)
    lo = min(finite) if lo is None else lo
    hi = max(finite) if hi is None else hi
    top = len(BLOCKS) - 1
    chars = []
    for v in points:
        if v is None:
            chars.append(MISSING)
        elif hi <= lo:
            chars.append(BLOCKS[top // 2])
        else:
            chars.append(BLOCKS[min(top, max(0, round((v - lo) / (hi - lo) * top)))])
    return "".join(chars)


def _as_float(value: object) -> float | None:
    """A finite float (numpy and torch scalars included), or None for anything missing."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _mean(chunk: list[float | None]) -> float | None:
    finite = [v for v in chunk if v is not None]
    return sum(finite) / len(finite) if finite else None
