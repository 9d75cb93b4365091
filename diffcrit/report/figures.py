"""Figures of analyze and guide results, drawn headless (the Agg canvas, no pyplot state).

``plot_results(docs, path)`` is the entry point: one result draws alone, several overlay (line style per
result); an analyze result draws its six panels (``analyze_figures``), a guide result each arm's metrics and the
paired differences or the sweep's profile (``guide_figures``). Documents are read through ``report.view``.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Mapping, Sequence

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..errors import UserError
from ..io import atomic_write_bytes
from .analyze_figures import draw_analyze
from .document import KIND_ANALYZE, result_kind
from .guide_figures import draw_guide
from .view import AnalyzeView, GuideView, view

FORMATS = {".png": "png", ".svg": "svg", ".pdf": "pdf"}
FIGSIZE_IN = (13.0, 8.5)
DPI = 100  # a PNG is FIGSIZE_IN * DPI pixels: 1300 x 850


def plot_results(docs: Sequence[Mapping[str, Any]], path: Path | str,
                 labels: Sequence[str] | None = None) -> Path:
    """Draw result documents (all analyze or all guide) into ``path`` (.png, .svg or .pdf)."""
    path = Path(path)
    atomic_write_bytes(path, figure_bytes(docs, figure_format(path), labels))
    return path


def figure_format(path: Path | str) -> str:
    """The format ``path``'s suffix names (png, svg, pdf); anything else is a user error (checked before any work)."""
    fmt = FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise UserError(f"cannot tell the figure format of {path}", f"use one of {', '.join(FORMATS)}")
    return fmt


def figure_bytes(docs: Sequence[Mapping[str, Any]], fmt: str, labels: Sequence[str] | None = None) -> bytes:
    """The figure of ``docs`` encoded as ``fmt`` (``figure_format``), not written anywhere."""
    buffer = io.BytesIO()
    make_figure(docs, labels).savefig(buffer, format=fmt, dpi=DPI)
    return buffer.getvalue()


def make_figure(docs: Sequence[Mapping[str, Any]], labels: Sequence[str] | None = None) -> Figure:
    """The figure for ``docs`` without writing it (notebooks: ``display(make_figure([doc]))``)."""
    if not docs:
        raise UserError("nothing to plot", "give at least one result JSON")
    kinds = {result_kind(doc) for doc in docs}
    if len(kinds) > 1:
        raise UserError("cannot overlay analyze and guide results in one figure", "plot them separately")
    views = [view(doc, f"result {i + 1}") for i, doc in enumerate(docs)]
    labels = _labels(views, labels)
    fig = Figure(figsize=FIGSIZE_IN, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)  # headless: Agg, whatever backend pyplot uses
    if kinds.pop() == KIND_ANALYZE:
        draw_analyze(fig, views, labels)
    else:
        draw_guide(fig, views, labels)
    return fig


def _labels(views: Sequence[AnalyzeView | GuideView], labels: Sequence[str] | None) -> list[str]:
    if labels is not None:
        if len(labels) != len(views):
            raise UserError(f"got {len(labels)} labels for {len(views)} results", "give one label per result")
        return list(labels)
    names = [v.model.id for v in views]
    if len(set(names)) < len(names):  # one model twice: tell the runs apart by their conditioning where it differs
        names = [name + (f" ({c})" if (c := v.model.conditioned()) else "")
                 for name, v in zip(names, views, strict=True)]
    return [name if names.count(name) == 1 else f"{name} #{i + 1}" for i, name in enumerate(names)]
