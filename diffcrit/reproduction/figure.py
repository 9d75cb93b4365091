"""The figure of a reproduce document (``diffcrit reproduce --plot``), drawn headless: one row per claim with a
number measured, its ci95 as a bar, the prediction as a cross, coloured by verdict (docs/reproduce.md)."""

from __future__ import annotations

import io
from typing import Any, Mapping

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from .verdicts import CONFIRMED, INCONCLUSIVE, REFUTED

VERDICT_COLORS = {CONFIRMED: "#2a9d8f", REFUTED: "#b5485d", INCONCLUSIVE: "#6c757d"}
ROW_IN, WIDTH_IN, DPI = 0.42, 11.0, 100
MIN_SPAN = 0.05  # relative: a row's x range spans at least 5 % of its largest value (zero-width intervals)


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _draw_markers(ax, markers: Mapping[str, Any], color: str) -> list[float]:
    """A coincidence claim's markers (name -> marker with t and ci95, or None), one thin bar each, labelled; -> the
    values drawn (for the row's x range)."""
    drawn = []
    found = [(name, m) for name, m in markers.items() if m and m.get("t") is not None]
    for i, (name, marker) in enumerate(found):
        y = (i - (len(found) - 1) / 2) * 0.4
        low, high = marker.get("ci95") or (marker["t"], marker["t"])
        ax.plot([low, high], [y, y], color=color, lw=2, alpha=0.6)
        ax.plot([marker["t"]], [y], "o", color=color, ms=4)
        ax.annotate(name, (high, y), xytext=(3, 0), textcoords="offset points", va="center", fontsize=6)
        drawn += [low, high]
    if found:
        ax.set_ylim(-1, 1)
    return drawn


def make_claims_figure(document: Mapping[str, Any]) -> Figure:
    """Per claim: measured (dot) with ci95 (bar) and the numeric prediction (cross); each row on its own x scale.
    Claims with nothing numeric measured are listed by id with their verdict."""
    claims = document["claims"]
    figure = Figure(figsize=(WIDTH_IN, max(2.0, ROW_IN * len(claims) + 1.0)))
    FigureCanvasAgg(figure)
    axes = figure.subplots(max(len(claims), 1), 1, squeeze=False)[:, 0]
    for ax, claim in zip(axes, claims, strict=False):
        color = VERDICT_COLORS[claim["verdict"]]
        measured, predicted = _number(claim["measured"]), _number(claim["prediction"])
        if claim["ci95"] is not None:
            ax.plot(claim["ci95"], [0, 0], color=color, lw=4, alpha=0.5, solid_capstyle="butt")
        if measured is not None:
            ax.plot([measured], [0], "o", color=color)
        if predicted is not None:
            ax.plot([predicted], [0], "x", color="#111111", ms=9, mew=2)
        values = [v for v in (*(claim["ci95"] or ()), measured, predicted) if v is not None]
        values += _draw_markers(ax, (claim.get("details") or {}).get("markers") or {}, color)
        if values:
            low, high = min(values), max(values)
            half = max(high - low, MIN_SPAN * max(abs(low), abs(high)), 1e-3) * 0.6
            ax.set_xlim((low + high) / 2 - half, (low + high) / 2 + half)
        ax.ticklabel_format(axis="x", useOffset=False)
        ax.set_yticks([])
        ax.set_ylabel(f"{claim['id']}\n{claim['verdict']}", rotation=0, ha="right", va="center", fontsize=7,
                      color=color)
        ax.tick_params(axis="x", labelsize=7)
        for side in ("top", "right", "left"):
            ax.spines[side].set_visible(False)
    handles = [Line2D([], [], marker="o", ls="", color=c, label=v) for v, c in VERDICT_COLORS.items()]
    handles.append(Line2D([], [], marker="x", ls="", color="#111111", label="prediction"))
    figure.legend(handles=handles, loc="upper right", ncols=4, fontsize=8, frameon=False)
    figure.suptitle(f"diffcrit reproduce — {document['paper']} ({document['power']} power)", x=0.02, ha="left",
                    fontsize=10)
    height = figure.get_figheight()
    figure.subplots_adjust(left=0.28, right=0.98, top=1 - 0.6 / height, bottom=0.3 / height, hspace=1.2)
    return figure


def claims_figure_bytes(document: Mapping[str, Any], fmt: str) -> bytes:
    """The figure encoded as ``fmt`` (png, svg, pdf: ``figures.figure_format``), not written anywhere."""
    buffer = io.BytesIO()
    make_claims_figure(document).savefig(buffer, format=fmt, dpi=DPI)
    return buffer.getvalue()
