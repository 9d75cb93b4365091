"""Small drawing helpers the analyze and guide figures share (matplotlib axes in, nothing out)."""

from __future__ import annotations

import textwrap

import numpy as np

from .view import Interval


def no_data(ax, text: str) -> None:
    """A panel with nothing to draw says why, in its middle."""
    ax.set_yticks([])
    lines = [wrapped for line in text.split("\n") for wrapped in textwrap.wrap(line, 44)]
    ax.text(0.5, 0.5, "\n".join(lines), ha="center", va="center", transform=ax.transAxes, fontsize=10,
            color="#555555", gid="note")


def ci_err(mean: float, ci: Interval | None):
    """An interval around ``mean`` as matplotlib's [[below], [above]] error bar; None without one."""
    if ci is None:
        return None
    return [[max(mean - ci[0], 0.0)], [max(ci[1] - mean, 0.0)]]


def offsets(n: int) -> np.ndarray:
    """Small shifts that set ``n`` results' points side by side around one position."""
    return (np.arange(n) - (n - 1) / 2) * (0.5 / max(n, 1)) if n > 1 else np.zeros(1)


def dedup_legend(ax) -> None:
    """A legend with one entry per label."""
    handles, names = ax.get_legend_handles_labels()
    unique = dict(zip(names, handles, strict=True))
    ax.legend(unique.values(), unique.keys(), fontsize=8)
