"""Figures of analyze and guide results, drawn headless (the Agg canvas, no pyplot state).

Notation (docs/design.md §2, §3, §5): x axes are OU time t = log(1 + sigma^2), increasing to the right
(generation runs right to left), with a secondary sigma = sqrt(exp(t) - 1) axis on top.
Shell n holds wave number k_n = 2 pi n / L; stiffness s(k) = 1 - <v_k, J v_k>; the decided fraction
of a shell is Var D(y) / Var x0 over the samples; s_G = sigma^2 / (P_n + sigma^2) is the stiffness of a
Gaussian field with the samples' shell power P_n.

``plot_results(docs, path)`` is the entry point: one result draws alone, several overlay
(line style per result); a guide result draws each arm's metrics and the paired differences.
An analyze result draws six panels: decided fractions, stiffness beside s_G, the instability
fraction, the stiffness heatmap, the correlation lengths and the markers. Keys a result lacks
(results of diffcrit 0.1.0) leave their panel with a note.
"""

from __future__ import annotations

import io
import math
import textwrap
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, MaxNLocator

from ..errors import UserError
from ..io import atomic_write_bytes
from .document import KIND_ANALYZE, describe_conditioning, result_kind, transition_words

FORMATS = {".png": "png", ".svg": "svg", ".pdf": "pdf"}
FIGSIZE_IN = (13.0, 8.5)
DPI = 100  # a PNG is FIGSIZE_IN * DPI pixels: 1300 x 850

LOW_SHELLS = 4  # stiffness curves drawn for shells 0..LOW_SHELLS-1
DOC_STYLES = ("-", "--", ":", "-.")
NULL_STYLE = (0, (1, 2.5))  # the Gaussian null's curves: sparse dots, unlike every DOC_STYLES entry
SHELL_COLORS = ("#1b4f9c", "#2a9d8f", "#e9a23b", "#b5485d", "#6c757d")
XI_SERIES = (("xi_state", "ξ(y) state", "#1f77b4"), ("xi_denoised", "ξ(D(y)) denoised", "#d62728"),
             ("xi_eq", "ξ_eq dispersion", "#2ca02c"))
MARKER_STYLES = {  # every marker of docs/design.md §6, in the order the markers panel lists them
    "decision": ("D", "#111111", "decided fraction crosses ½"),
    "instability_onset": ("o", "#b5485d", "instability fraction turns positive"),
    "stiffness_zero": ("o", "#1b4f9c", "s₀ = 0"),
    "stiffness_min": ("v", "#2a9d8f", "min s₀"),
    "xi_eq_peak": ("^", "#2ca02c", "peak ξ_eq"),
    "xi_growth": ("s", "#d62728", "fastest ξ(D) growth"),
}
SIGMA_TICKS = (0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500)


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
    labels = _labels(docs, labels)
    fig = Figure(figsize=FIGSIZE_IN, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)  # headless: Agg, whatever backend pyplot uses
    if kinds.pop() == KIND_ANALYZE:
        _draw_analyze(fig, docs, labels)
    else:
        _draw_guide(fig, docs, labels)
    return fig


# --------------------------------------------------------------------------------------------
# Analyze results

PANELS = {"decided": (0, 0), "stiffness": (0, 1), "unstable": (0, 2), "heatmap": (1, 0), "xi": (1, 1),
          "markers": (1, 2)}
CURVE_PANELS = ("decided", "stiffness", "unstable", "xi")  # get the primary band, step rug and inconsistent shading
DECIDED_LEVEL = 0.5  # the decision marker: the decision shell's decided fraction crosses 1/2
CONSISTENT_BELOW = 1.25  # above it on a varying shell, the step's x0 estimate is inconsistent
DECIDED_YMAX = 1.6  # decided fractions above are clipped (they reach 40 at inconsistent steps)
INCONSISTENT_COLOR = "#e07b39"
PRIMARY_COLOR = "#555555"
NOT_IN = "not in this result"
LEGACY_ROW = "critical.t"  # results before the primary marker: critical.t was the median of the markers


def _draw_analyze(fig: Figure, docs: Sequence[Mapping[str, Any]], labels: Sequence[str]) -> None:
    """1. decided fractions  2. stiffness and s_G  3. instability fraction  4. heatmap  5. xi  6. markers."""
    grid = fig.add_gridspec(2, 3)
    axes = {name: fig.add_subplot(grid[row, col]) for name, (row, col) in PANELS.items()}
    t_lo, t_hi = _t_range(docs)
    for name, ax in axes.items():
        ax.set_gid(name)
        ax.set_xlim(t_lo, t_hi)
        _sigma_axis(ax)
        ax.set_xlabel("t = log(1 + σ²)   (generation runs ←)", fontsize=9)
    _heatmap(fig, axes["heatmap"], docs, labels)
    for name in CURVE_PANELS:  # shading first, so curves draw over it
        for i, doc in enumerate(docs):
            _inconsistent_spans(axes[name], doc)
            _critical_band(axes[name], doc, DOC_STYLES[i % len(DOC_STYLES)])
    _decided_curves(axes["decided"], docs, labels)
    _stiffness_curves(axes["stiffness"], docs, labels)
    _unstable_curves(axes["unstable"], docs, labels)
    _xi_curves(axes["xi"], docs, labels)
    _markers_panel(axes["markers"], docs, labels)
    for name in CURVE_PANELS:
        _step_rug(axes[name], docs)
    _figure_legend(fig, docs, labels)
    fig.suptitle(_analyze_title(docs, labels), fontsize=12)


def _heatmap(fig: Figure, ax, docs: Sequence[Mapping[str, Any]], labels: Sequence[str]) -> None:
    """Stiffness over (t, shell); with several results, the last minus the first on a common grid."""
    first = _stiffness_matrix(docs[0])
    if len(docs) == 1 or first is None:
        if first is None:
            _no_data(ax, "no stiffness in this result (probes off)")
            return
        t, s = first
        lo, hi = float(np.nanmin(s)), float(np.nanmax(s))
        # s reaches -1/sigma^2 at y = 0: colours saturate at -1, the colour bar says so
        spread = max(abs(max(lo, -1.0)), abs(hi), 1e-6)
        vmin = min(max(lo, -1.0), -1e-3 * spread)
        norm = TwoSlopeNorm(vcenter=0.0, vmin=vmin, vmax=max(hi, 1e-3 * spread))
        mesh = ax.pcolormesh(t, np.arange(s.shape[1]), s.T, cmap="RdBu", norm=norm, shading="nearest")
        fig.colorbar(mesh, ax=ax, label="stiffness s = 1 − g", pad=0.01, extend="min" if lo < vmin else "neither")
        ax.set_title("stiffness over (t, shell): blue relaxes, red is unstable", fontsize=10)
    else:
        last = _stiffness_matrix(docs[-1])
        if last is None:
            _no_data(ax, f"no stiffness in {labels[-1]}")
            return
        shells = min(first[1].shape[1], last[1].shape[1])
        lo, hi = max(first[0][0], last[0][0]), min(first[0][-1], last[0][-1])
        if not hi > lo:
            _no_data(ax, "the t ranges do not overlap")
            return
        t = np.linspace(lo, hi, 96)
        # each stiffness clipped at -1 first, as in the single heatmap (s reaches -1/sigma^2 at y = 0)
        diff = np.stack([np.interp(t, last[0], np.maximum(last[1][:, n], -1.0))
                         - np.interp(t, first[0], np.maximum(first[1][:, n], -1.0)) for n in range(shells)], axis=1)
        bound = max(float(np.nanmax(np.abs(diff))) if np.isfinite(diff).any() else 0.0, 1e-6)
        mesh = ax.pcolormesh(t, np.arange(shells), diff.T, cmap="PuOr_r", vmin=-bound, vmax=bound, shading="nearest")
        clipped = min(float(np.nanmin(first[1])), float(np.nanmin(last[1]))) < -1.0
        fig.colorbar(mesh, ax=ax, label="Δ stiffness" + ("  (s clipped at −1)" if clipped else ""), pad=0.01)
        ax.set_title(f"Δ stiffness: {labels[-1]} − {labels[0]}", fontsize=10)
    ax.set_ylabel("shell n   (k_n = 2πn / L)")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))


def _decided_curves(ax, docs: Sequence[Mapping[str, Any]], labels: Sequence[str]) -> None:
    """Decided fraction Var D(y) / Var x0 per shell with its ci95 band, the 1/2 level and the 1.25 limit."""
    notes, drawn, peak = [], set(), 0.0
    for i, doc in enumerate(docs):
        if not _has(doc, "decided"):
            notes.append((labels[i], "decided fraction " + NOT_IN))
            continue
        steps, shell = _ordered_steps(doc), _decision_shell(doc)
        t = np.array([float(s["t"]) for s in steps])
        decided = _shell_matrix(steps, "decided", _n_shells(doc))
        band = _band_matrix(steps, "decided_ci95", decided.shape[1])
        flat = []
        for n in _drawn_shells(doc):
            if not np.isfinite(decided[:, n]).any():
                flat.append(n)
                continue
            color = SHELL_COLORS[n % len(SHELL_COLORS)]
            ax.fill_between(t, band[:, n, 0], band[:, n, 1], color=color, alpha=0.18, linewidth=0,
                            gid=f"decided-band:{i}:{n}")
            ax.plot(t, decided[:, n], DOC_STYLES[i % len(DOC_STYLES)], color=color,
                    linewidth=2.2 if n == shell else 1.3, gid=f"decided:{i}:{n}")
            key = "null_decided" if any(s.get("null_decided") for s in steps) else "gaussian_decided"
            null = _shell_matrix(steps, key, decided.shape[1]) if _has(doc, key) else None
            # the Gaussian null of docs/design.md §6a; beside other results only the decision shell's
            if null is not None and np.isfinite(null[:, n]).any() and (len(docs) == 1 or n == shell):
                ax.plot(t, null[:, n], linestyle=NULL_STYLE, color=color, linewidth=1.0, alpha=0.9,
                        gid=f"gaussian-decided:{i}:{n}")
            drawn.add(n)
            peak = max(peak, float(np.nanmax(decided[:, n])))
        if flat:
            shells = f"shell{'s' if len(flat) > 1 else ''} {_ranges(flat)}"
            notes.append((labels[i], f"{shells}: samples do not vary (no decided fraction)"))
        marker = _marker(doc, "decision")
        if marker is not None:
            ax.errorbar([marker["t"]], [DECIDED_LEVEL], xerr=_ci_err(marker["t"], marker.get("ci95")), fmt="D",
                        color="black", markersize=6, capsize=4, zorder=5, gid=f"decision-marker:{i}")
    if not drawn:
        _no_data(ax, "\n".join(_note_lines(notes, labels)) or "no decided fractions in these results")
        ax.set_title("decided fraction Var D(y) / Var x₀ per shell", fontsize=10)
        return
    ax.axhline(DECIDED_LEVEL, color="black", linestyle="--", linewidth=0.9, gid="decision-level")
    ax.axhline(CONSISTENT_BELOW, color=INCONSISTENT_COLOR, linestyle=":", linewidth=1.3, gid="consistency-limit")
    top = min(max(peak + 0.05, CONSISTENT_BELOW + 0.1), DECIDED_YMAX)
    ax.set_ylim(_above_rug(top), top)
    if peak > top:
        notes.append((None, f"clipped: the decided fraction reaches {peak:.3g}"))
    handles = [Line2D([], [], color="black", linestyle="--", linewidth=0.9, label="½: decision level"),
               Line2D([], [], color=INCONSISTENT_COLOR, linestyle=":", linewidth=1.3, label="1.25: consistency limit")]
    if any(_marker(doc, "decision") for doc in docs):
        handles.append(Line2D([], [], marker="D", color="black", linestyle="none", label="decision, 95% CI"))
    if any(_has(doc, "gaussian_decided") for doc in docs):
        handles.append(Line2D([], [], color="gray", linestyle=NULL_STYLE, linewidth=1.0,
                              label="Gaussian null (same spectrum and sampler)"))
    ax.legend(handles=handles, fontsize=7, loc="best", framealpha=0.85)
    _notes(ax, _note_lines(notes, labels))
    ax.set_ylabel("decided fraction   (band: 95% CI)")
    ax.set_title("decided fraction Var D(y) / Var x₀ per shell", fontsize=10)


def _stiffness_curves(ax, docs: Sequence[Mapping[str, Any]], labels: Sequence[str]) -> None:
    """Measured stiffness at the probed steps (band: ± s.e.m.) and the Gaussian reference s_G, dashed."""
    notes, drawn, lowest = [], set(), 0.0
    for i, doc in enumerate(docs):
        steps, width = _ordered_steps(doc), _n_shells(doc)
        t = np.array([float(s["t"]) for s in steps])
        gaussian = _shell_matrix(steps, "gaussian_stiffness", width) if _has(doc, "gaussian_stiffness") else None
        if gaussian is None:
            notes.append((labels[i], "Gaussian reference s_G " + NOT_IN))
        matrix = _stiffness_matrix(doc, sem=True)
        if matrix is None:
            notes.append((labels[i], "no stiffness (probes off)"))
        for n in _drawn_shells(doc):
            color = SHELL_COLORS[n % len(SHELL_COLORS)]
            if gaussian is not None and np.isfinite(gaussian[:, n]).any():
                ax.plot(t, gaussian[:, n], linestyle=(0, (4, 2)), color=color, linewidth=0.9, alpha=0.8,
                        gid=f"gaussian:{i}:{n}")
                drawn.add(n)
            if matrix is not None and n < matrix[1].shape[1]:
                tp, s, sem = matrix
                ax.fill_between(tp, s[:, n] - sem[:, n], s[:, n] + sem[:, n], color=color, alpha=0.18, linewidth=0,
                                gid=f"stiffness-band:{i}:{n}")
                ax.plot(tp, s[:, n], DOC_STYLES[i % len(DOC_STYLES)], color=color, linewidth=1.6, marker=".",
                        markersize=4, gid=f"stiffness:{i}:{n}")
                lowest = min(lowest, float(np.nanmin(s[:, n])) if np.isfinite(s[:, n]).any() else 0.0)
                drawn.add(n)
    if not drawn:
        _no_data(ax, "\n".join(_note_lines(notes, labels)) or "no stiffness in these results")
        ax.set_title("stiffness s(k) and the Gaussian reference s_G", fontsize=10)
        return
    ax.axhline(0.0, color="black", linewidth=0.8)
    if lowest < -2.0:  # at y = 0 the stiffness reaches -1/sigma^2: linear in [-1, 1], logarithmic beyond
        ax.set_yscale("symlog", linthresh=1.0)
        ax.set_ylim(top=3.0)
    handles = [Line2D([], [], color="#333333", marker=".", linewidth=1.6, label="measured s, ± s.e.m."),
               Line2D([], [], color="#333333", linestyle=(0, (4, 2)), linewidth=0.9, label="Gaussian reference s_G")]
    ax.legend(handles=handles, fontsize=7, loc="lower right", bbox_to_anchor=(1.0, 0.06), framealpha=0.85)
    _notes(ax, _note_lines(notes, labels))
    ax.set_ylabel("stiffness s(k) = 1 − g")
    ax.set_title("stiffness s(k) and the Gaussian reference s_G = σ²/(P+σ²)", fontsize=10)


def _unstable_curves(ax, docs: Sequence[Mapping[str, Any]], labels: Sequence[str]) -> None:
    """Share of probe trajectories with shell stiffness < 0: the decision shell with its ci95 band, the rest thin."""
    notes, drawn = [], set()
    for i, doc in enumerate(docs):
        if not _has(doc, "unstable_fraction"):
            notes.append((labels[i], "instability fraction " + NOT_IN))
            continue
        steps = [s for s in _ordered_steps(doc)
                 if any(_is_number(v) for v in (s.get("unstable_fraction") or []))]
        if not steps:
            at_zero = (doc.get("config") or {}).get("linearize_at") == "zero" or \
                (doc.get("critical") or {}).get("regime") == "zero"
            notes.append((labels[i], "not measured: linearized at y = 0\n(no trajectories)" if at_zero
                          else "no probed steps"))
            continue
        t, shell = np.array([float(s["t"]) for s in steps]), _decision_shell(doc)
        unstable = _shell_matrix(steps, "unstable_fraction", _n_shells(doc))
        band = _band_matrix(steps, "unstable_fraction_ci95", unstable.shape[1])
        for n in _drawn_shells(doc):
            if not np.isfinite(unstable[:, n]).any():
                continue
            color = SHELL_COLORS[n % len(SHELL_COLORS)]
            if n == shell:
                ax.fill_between(t, band[:, n, 0], band[:, n, 1], color=color, alpha=0.18, linewidth=0,
                                gid=f"unstable-band:{i}:{n}")
            ax.plot(t, unstable[:, n], DOC_STYLES[i % len(DOC_STYLES)], color=color, marker=".", markersize=4,
                    linewidth=2.0 if n == shell else 0.9, alpha=1.0 if n == shell else 0.7,
                    zorder=2.5 if n == shell else 2.0, gid=f"unstable:{i}:{n}")
            drawn.add(n)
        if np.nanmax(unstable) <= 0:
            notes.append((labels[i], "no probed trajectory is unstable"))
        marker = _marker(doc, "instability_onset")
        if marker is not None:
            ax.errorbar([marker["t"]], [0.0], xerr=_ci_err(marker["t"], marker.get("ci95")), fmt="o",
                        color=MARKER_STYLES["instability_onset"][1], markersize=6, capsize=4, zorder=5,
                        gid=f"onset-marker:{i}")
    if not drawn:
        _no_data(ax, "\n".join(_note_lines(notes, labels)) or "no instability fraction in these results")
        ax.set_title("instability fraction (share with s < 0)", fontsize=10)
        return
    ax.set_ylim(_above_rug(1.04), 1.04)
    if any(_marker(doc, "instability_onset") for doc in docs):
        ax.legend(handles=[Line2D([], [], marker="o", color=MARKER_STYLES["instability_onset"][1], linestyle="none",
                                  label="instability onset, 95% CI")], fontsize=7, loc="upper right", framealpha=0.85)
    _notes(ax, _note_lines(notes, labels), loc="center right")
    ax.set_ylabel("share of trajectories with s < 0   (band: 95% CI)", fontsize=9)
    ax.set_title("instability fraction (thick: decision shell)", fontsize=10)


def _xi_curves(ax, docs: Sequence[Mapping[str, Any]], labels: Sequence[str]) -> None:
    """xi(y), xi(D(y)) at every step, xi_eq at the probed steps; undefined values are gaps (NaN), never 0."""
    drawn, notes = set(), []
    for i, doc in enumerate(docs):
        for key, name, color in XI_SERIES:
            steps = _ordered_steps(doc)
            if key == "xi_eq":  # measured at probed steps only: connect those, leave gaps where undefined
                steps = [s for s in steps if _probed(s)]
            if not steps or not any(key in s for s in steps):
                continue
            t = np.array([float(s["t"]) for s in steps])
            v = np.array([_nan(s.get(key)) for s in steps])
            v[~(v > 0)] = np.nan  # undefined (null; 0 in results of diffcrit 0.1.0): a gap
            undefined = int(np.isnan(v).sum())
            where = "probed steps" if key == "xi_eq" else "steps"
            if undefined == len(v):
                notes.append((labels[i], f"{name.split()[0]} undefined at every {where[:-1]}"))
            elif undefined:
                notes.append((labels[i], f"{name.split()[0]} undefined at {undefined} of {len(v)} {where} (gaps)"))
            if np.isfinite(v).any():
                ax.plot(t, v, DOC_STYLES[i % len(DOC_STYLES)], color=color, linewidth=1.6,
                        marker="." if key == "xi_eq" else None, markersize=4, gid=f"{key}:{i}")
                drawn.add(key)
    ax.set_title("correlation lengths of state, denoised and dispersion", fontsize=10)
    if not drawn:
        _no_data(ax, "\n".join(_note_lines(notes, labels)) or "no correlation lengths in these results")
        return
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}" if _leading_digit(v) in (2, 5) else ""))
    handles = [Line2D([], [], color=color, linewidth=2, label=name) for key, name, color in XI_SERIES if key in drawn]
    ax.legend(handles=handles, fontsize=7, loc="upper right", framealpha=0.85)
    _notes(ax, _note_lines(notes, labels), loc="lower left")
    ax.set_ylabel("correlation length ξ (pixels)")


def _markers_panel(ax, docs: Sequence[Mapping[str, Any]], labels: Sequence[str]) -> None:
    """One row per marker: its t with the bootstrap ci95, its presence, its modes when multimodal."""
    names = _marker_names(docs)
    legacy = [i for i, doc in enumerate(docs) if "primary" not in (doc.get("critical") or {})
              and _is_number((doc.get("critical") or {}).get("t"))]
    rows = names + ([LEGACY_ROW] if legacy else [])
    if not rows:
        _no_data(ax, "no markers in these results")
        return
    y_of = {name: len(rows) - 1 - j for j, name in enumerate(rows)}
    offsets = _offsets(len(docs)) * 1.2
    for name in names:
        missing = [label for doc, label in zip(docs, labels, strict=True) if _marker(doc, name) is None]
        if missing:
            text = "not found" if len(missing) == len(docs) else f"not found: {', '.join(missing)}"
            ax.text(0.01, y_of[name], text, fontsize=7, color="#888888", va="center",
                    transform=ax.get_yaxis_transform())
    for i, doc in enumerate(docs):
        shape = "os^D"[i % 4] if len(docs) > 1 else None
        for name in names:
            marker = _marker(doc, name)
            if marker is not None:
                m_shape, color, _ = MARKER_STYLES.get(name, ("P", "#555555", name))
                _marker_point(ax, marker, y_of[name] - offsets[i], shape or m_shape, color, name, i, len(docs) > 1)
        if i in legacy:
            critical = doc["critical"]
            _marker_point(ax, {"t": critical["t"], "ci95": critical.get("ci95")}, y_of[LEGACY_ROW] - offsets[i],
                          shape or "D", "black", LEGACY_ROW, i, len(docs) > 1)
    ax.set_yticks([y_of[r] for r in rows], labels=[_marker_label(r, docs, labels) for r in rows], fontsize=8)
    for tick, name in zip(ax.get_yticklabels(), rows, strict=True):
        if any((doc.get("critical") or {}).get("primary") == name for doc in docs):
            tick.set_fontweight("bold")
    ax.set_ylim(-0.7, len(rows) - 0.3)
    ax.grid(axis="x", alpha=0.3)
    handles = [Line2D([], [], color="#333333", marker="|", markersize=8, label="bootstrap 95% CI")]
    if any(_multimodal(doc) for doc in docs):
        handles.append(Line2D([], [], color="#333333", marker="o", mfc="none", linestyle="none",
                              label="bootstrap modes (multimodal)"))
    if len(docs) > 1:
        handles += [Line2D([], [], color="#333333", marker="os^D"[i % 4], linestyle="none", label=label)
                    for i, label in enumerate(labels)]
    ax.legend(handles=handles, fontsize=7, loc="lower right", framealpha=0.85)
    ax.set_title("markers: t, 95% CI, presence", fontsize=10)


def _marker_point(ax, marker: Mapping[str, Any], y: float, shape: str, color: str, name: str, i: int,
                  overlay: bool) -> None:
    """A marker's t with its ci95, its bootstrap modes when multimodal, and a note of presence."""
    t_m = marker["t"]
    ax.errorbar([t_m], [y], xerr=_ci_err(t_m, marker.get("ci95")), fmt=shape, color=color, markersize=7,
                capsize=4, linewidth=1.4, gid=f"marker:{name}:{i}")
    modes = [m["t"] for m in marker.get("modes") or [] if _is_number((m or {}).get("t"))]
    if marker.get("multimodal") or len(modes) > 1:
        ax.plot(modes, [y] * len(modes), "o", mfc="none", color=color, markersize=9, linestyle="none",
                gid=f"modes:{name}:{i}")
    text = _marker_text(marker, with_t=not overlay)
    if not text:
        return
    style = {"fontsize": 7, "color": "#b5485d" if marker.get("multimodal") else "#333333",
             "textcoords": "offset points"}
    if overlay:  # beside the interval, so the rows of several results do not collide
        right = max([t_m] + ([marker["ci95"][1]] if _valid_ci(marker.get("ci95")) else []))
        ax.annotate(text, (right, y), xytext=(6, 0), ha="left", va="center", **style)
    else:
        ax.annotate(text, (t_m, y), xytext=(0, 7), ha="center", **style)


def _marker_label(name: str, docs: Sequence[Mapping[str, Any]], labels: Sequence[str]) -> str:
    if name == LEGACY_ROW:
        return "critical.t (median)"
    primaries = [label for doc, label in zip(docs, labels, strict=True)
                 if (doc.get("critical") or {}).get("primary") == name]
    if not primaries:
        return name
    if len(docs) == 1 or len(primaries) == len(docs):
        return f"{name}* (primary)"
    return f"{name}* (primary: {', '.join(primaries)})"


def _marker_text(marker: Mapping[str, Any], with_t: bool = True) -> str:
    parts = [f"{marker['t']:.2f}"] if with_t else []
    if _is_number(marker.get("presence")):
        parts.append(f"presence {marker['presence']:.0%}")
    if marker.get("multimodal"):
        parts.append(f"multimodal ({len(marker.get('modes') or [])} modes)" if with_t else "multimodal")
    return ", ".join(parts)


def _marker_names(docs: Sequence[Mapping[str, Any]]) -> list[str]:
    """Every marker named in any result (found or not), in the order of MARKER_STYLES."""
    present = {name for doc in docs for name in ((doc.get("critical") or {}).get("markers") or {})}
    return [m for m in MARKER_STYLES if m in present] + sorted(present - set(MARKER_STYLES))


def _marker(doc: Mapping[str, Any], name: str) -> Mapping[str, Any] | None:
    marker = ((doc.get("critical") or {}).get("markers") or {}).get(name)
    return marker if isinstance(marker, Mapping) and _is_number(marker.get("t")) else None


def _multimodal(doc: Mapping[str, Any]) -> bool:
    return any((m or {}).get("multimodal") for m in ((doc.get("critical") or {}).get("markers") or {}).values())


def _critical_band(ax, doc: Mapping[str, Any], style: str) -> None:
    """The primary marker's t (line) and ci95 (band) over a curve panel."""
    critical = doc.get("critical") or {}
    if not (critical.get("found") and _is_number(critical.get("t"))):
        return
    ax.axvline(critical["t"], color=PRIMARY_COLOR, linestyle=style, linewidth=1.0, gid="critical")
    if _valid_ci(critical.get("ci95")):
        ax.axvspan(*critical["ci95"], color=PRIMARY_COLOR, alpha=0.13, linewidth=0, gid="critical-band")


def _inconsistent_spans(ax, doc: Mapping[str, Any]) -> None:
    """Shade the steps whose x0 estimate is inconsistent, each reaching halfway to its neighbours."""
    steps = _ordered_steps(doc)
    bad = _inconsistent(doc, steps)
    if not bad.any():
        return
    t = np.array([float(s["t"]) for s in steps])
    mids = (t[1:] + t[:-1]) / 2 if len(t) > 1 else np.array([])
    gap = float(np.min(np.diff(t))) / 2 if len(t) > 1 else 0.25
    left = np.concatenate([[t[0] - gap], mids])
    right = np.concatenate([mids, [t[-1] + gap]])
    start = None
    for j in range(len(t) + 1):
        if j < len(t) and bad[j]:
            start = j if start is None else start
        elif start is not None:
            ax.axvspan(left[start], right[j - 1], color=INCONSISTENT_COLOR, alpha=0.16, linewidth=0,
                       gid="inconsistent")
            start = None


def _inconsistent(doc: Mapping[str, Any], steps: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """(S,) bool over ``steps``: x0_consistent is false, or the step is listed in the diagnostics."""
    listed = ((doc.get("diagnostics") or {}).get("total_variance") or {}).get("inconsistent_steps") or []
    return np.array([s.get("x0_consistent") is False or s.get("index") in listed for s in steps], dtype=bool)


def _step_rug(ax, docs: Sequence[Mapping[str, Any]]) -> None:
    """Ticks at the bottom edge at every step's t: short and grey, tall and dark where probed."""
    ylim = ax.get_ylim()
    for i, doc in enumerate(docs):
        steps = _ordered_steps(doc)
        base = 0.055 * i
        probed = [float(s["t"]) for s in steps if _probed(s)]
        plain = [float(s["t"]) for s in steps if not _probed(s)]
        if plain:
            ax.vlines(plain, base, base + 0.025, transform=ax.get_xaxis_transform(), color="#9a9a9a",
                      linewidth=0.8, gid="steps")
        if probed:
            ax.vlines(probed, base, base + 0.05, transform=ax.get_xaxis_transform(), color="#222222",
                      linewidth=1.3, gid="steps-probed")
    ax.set_ylim(ylim)


def _above_rug(top: float) -> float:
    """The lower y limit that puts 0 just above the step rug (the lowest 7% of the panel)."""
    return -0.075 * top / 0.925


def _analyze_title(docs: Sequence[Mapping[str, Any]], labels: Sequence[str]) -> str:
    if len(docs) == 1:
        doc = docs[0]
        model = doc.get("model") or {}
        shape = "×".join(str(v) for v in model.get("shape") or [])
        conditioned = describe_conditioning(model.get("conditioning"))
        return f"diffcrit analyze — {model.get('id', '?')} ({', '.join(filter(None, (shape, conditioned)))}) — " \
               f"{_tc_text(doc)}"
    sep = ";  " if len(docs) <= 2 else "\n"
    return "diffcrit analyze — " + sep.join(f"{label}: {_tc_text(doc, short=True)}"
                                            for label, doc in zip(labels, docs, strict=True))


def _tc_text(doc: Mapping[str, Any], short: bool = False) -> str:
    critical = doc.get("critical") or {}
    if critical.get("transition") and not critical.get("found") and critical.get("regime") != "zero":
        return "no transition beyond a Gaussian crossover" if short else transition_words(critical)
    if not (critical.get("found") and _is_number(critical.get("t"))):
        return "no critical point" + (f" ({critical['primary']} not found)" if critical.get("primary") else "")
    text = f"t_c = {critical['t']:.2f}"
    if (critical.get("transition") or {}).get("evidence"):
        text = f"transition in shell {critical['transition']['shell']}: {text}"
    if _valid_ci(critical.get("ci95")):
        text += f" [{critical['ci95'][0]:.2f}, {critical['ci95'][1]:.2f}]"
    if critical.get("primary"):
        text += f" ({critical['primary']})"
    if short:
        return text
    if _is_number(critical.get("sigma")):
        text += f", σ = {critical['sigma']:.2f}"
    if isinstance(critical.get("step"), int):
        text += f", step {critical['step']}/{len(doc.get('steps') or [])}"
    if critical.get("regime"):
        text += f", linearized at {'y = 0' if critical['regime'] == 'zero' else 'the trajectories'}"
    return text


def _shell_handles(shells: Sequence[int], docs: Sequence[Mapping[str, Any]]) -> list[Line2D]:
    decision = {_decision_shell(doc) for doc in docs if "decision_shell" in (doc.get("critical") or {})}
    return [Line2D([], [], color=SHELL_COLORS[n % len(SHELL_COLORS)], linewidth=2.2 if n in decision else 1.4,
                   label=f"shell {n}" + (" (decision)" if n in decision else "")) for n in shells]


def _figure_legend(fig: Figure, docs: Sequence[Mapping[str, Any]], labels: Sequence[str]) -> None:
    """One legend below the panels for what they share: shell colours, bands, the step rug, line styles."""
    shells = sorted({n for doc in docs for n in _drawn_shells(doc)})
    handles = _shell_handles(shells, docs) + _band_handles(docs)
    handles.append(Line2D([], [], color="#222222", marker="|", markersize=9, linestyle="none",
                          label="steps (tall: probed)"))
    handles += _doc_handles(labels)
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 9), fontsize=8, frameon=False)


def _band_handles(docs: Sequence[Mapping[str, Any]]) -> list:
    handles = []
    if any((doc.get("critical") or {}).get("found") for doc in docs):
        primaries = {(doc.get("critical") or {}).get("primary") for doc in docs} - {None}
        name = f"critical t ({', '.join(sorted(primaries))})" if primaries else "critical t"
        handles.append(Patch(facecolor=PRIMARY_COLOR, alpha=0.3, edgecolor=PRIMARY_COLOR, label=f"{name}, 95% CI"))
    if any(_inconsistent(doc, _ordered_steps(doc)).any() for doc in docs):
        handles.append(Patch(facecolor=INCONSISTENT_COLOR, alpha=0.3, label="x0 estimate inconsistent"))
    return handles


def _note_lines(notes: Sequence[tuple[str | None, str]], labels: Sequence[str]) -> list[str]:
    """(label or None, text) pairs as lines; one text said of every result is said once, without labels."""
    texts = list(dict.fromkeys(text for _, text in notes))
    lines = []
    for text in texts:
        who = [label for label, t in notes if t == text and label is not None]
        lines.append(text if not who or len(labels) == 1 or set(who) == set(labels) else f"{', '.join(who)}: {text}")
    return lines


def _notes(ax, notes: Sequence[str], loc: str = "upper left") -> None:
    """Short notes (missing keys, undefined values) in a corner of the panel."""
    if not notes:
        return
    x, ha = (0.02, "left") if "left" in loc else (0.98, "right")
    y, va = {"upper": (0.97, "top"), "lower": (0.08, "bottom"), "center": (0.5, "center")}[loc.split()[0]]
    ax.text(x, y, "\n".join(notes), transform=ax.transAxes, ha=ha, va=va, fontsize=7, color="#444444",
            bbox={"boxstyle": "round,pad=0.3", "facecolor": "white", "edgecolor": "#cccccc", "alpha": 0.85},
            gid="note", zorder=6)


def _ranges(values: Sequence[int]) -> str:
    """[1, 2, 3, 5] -> '1–3, 5'."""
    parts, start = [], None
    for j, v in enumerate(values):
        start = v if start is None else start
        if j + 1 == len(values) or values[j + 1] != v + 1:
            parts.append(f"{start}" if start == v else f"{start}–{v}")
            start = None
    return ", ".join(parts)


# --------------------------------------------------------------------------------------------
# Guide results


def _draw_guide(fig: Figure, docs: Sequence[Mapping[str, Any]], labels: Sequence[str]) -> None:
    """Per metric: each arm's mean with 95% CI (left) and the paired differences (right)."""
    is_scored = [bool(doc.get("scored") and doc.get("metric_names")) for doc in docs]
    scored = [(doc, label) for doc, label, ok in zip(docs, labels, is_scored, strict=True) if ok]
    fig.suptitle(_guide_title(docs, labels), fontsize=13)
    if not scored:
        ax = fig.add_subplot()
        ax.set_axis_off()
        ax.text(0.5, 0.55, "not scored: no classifier metrics in this guide result", ha="center", va="center",
                fontsize=18, transform=ax.transAxes)
        ax.text(0.5, 0.42, "guide ran with scored = false (no classifier); re-run it with one to compare arms",
                ha="center", va="center", fontsize=11, color="#555555", transform=ax.transAxes)
        arms = ", ".join(f"{arm.get('name')} (n = {arm.get('n')})" for doc in docs for arm in doc.get("arms") or [])
        if arms:
            ax.text(0.5, 0.34, f"arms: {arms}", ha="center", va="center", fontsize=11, color="#555555",
                    transform=ax.transAxes)
        return
    metrics = list(dict.fromkeys(m for doc, _ in scored for m in doc["metric_names"]))
    axes = fig.subplots(len(metrics), 2, squeeze=False)
    swept = [(doc, label) for doc, label in scored if doc.get("sweep")]
    for row, metric in enumerate(metrics):
        _guide_arms(axes[row, 0], scored, metric)
        if swept:  # a sweep has no treatment to compare: its profile over t instead
            _guide_profile(axes[row, 1], swept, metric)
        else:
            _guide_comparisons(axes[row, 1], scored, metric)
    unscored = [label for label, ok in zip(labels, is_scored, strict=True) if not ok]
    if unscored:
        fig.text(0.5, 0.005, f"not scored (left out): {', '.join(unscored)}", ha="center", fontsize=9)


def _guide_arms(ax, scored: Sequence[tuple[Mapping[str, Any], str]], metric: str) -> None:
    arms = list(dict.fromkeys(arm["name"] for doc, _ in scored for arm in doc.get("arms") or []))
    offsets = _offsets(len(scored))
    for i, (doc, label) in enumerate(scored):
        for x, name in enumerate(arms):
            arm = next((a for a in doc.get("arms") or [] if a["name"] == name), None)
            stat = ((arm or {}).get("metrics") or {}).get(metric)
            if not stat or not _is_number(stat.get("mean")):
                continue
            err = _ci_err(stat["mean"], stat.get("ci95"))
            ax.errorbar([x + offsets[i]], [stat["mean"]], yerr=err, fmt="os^D"[i % 4], capsize=5,
                        color=f"C{i}", markersize=7, label=label)
    ticks = []
    for name in arms:
        ns = [a.get("n") for doc, _ in scored for a in doc.get("arms") or [] if a["name"] == name]
        ticks.append(f"{name}\n(n = {ns[0]})" if ns and ns[0] is not None else name)
    crowded = len(arms) > 6  # a sweep: one arm per block
    ax.set_xticks(range(len(arms)), labels=ticks, rotation=60 if crowded else 0, ha="right" if crowded else "center",
                  fontsize=8 if crowded else None)
    ax.set_xlim(-0.6, len(arms) - 0.4)
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} per arm (mean, 95% CI)", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    if len(scored) > 1:
        _dedup_legend(ax)


def _guide_comparisons(ax, scored: Sequence[tuple[Mapping[str, Any], str]], metric: str) -> None:
    pairs = list(dict.fromkeys(f"{c['arm']} − {c['versus']}" for doc, _ in scored
                               for c in doc.get("comparisons") or [] if c.get("metric") == metric))
    if not pairs:
        _no_data(ax, f"no paired comparisons for {metric}")
        return
    offsets = _offsets(len(scored))
    ax.axvline(0.0, color="black", linewidth=0.8)
    for i, (doc, label) in enumerate(scored):
        for c in doc.get("comparisons") or []:
            if c.get("metric") != metric or not _is_number(c.get("diff_mean")):
                continue
            y = len(pairs) - 1 - pairs.index(f"{c['arm']} − {c['versus']}") + offsets[i]
            ax.errorbar([c["diff_mean"]], [y], xerr=_ci_err(c["diff_mean"], c.get("ci95")), fmt="os^D"[i % 4],
                        capsize=5, color=f"C{i}", markersize=7, label=label)
            ax.annotate(_comparison_text(c), (c["diff_mean"], y), textcoords="offset points", xytext=(8, 6),
                        fontsize=8)
    ax.set_yticks(range(len(pairs)), labels=pairs[::-1])
    ax.set_ylim(-0.6, len(pairs) - 0.4)
    ax.margins(x=0.2)
    ax.set_xlabel(f"paired difference in {metric}")
    ax.set_title(f"paired differences in {metric} (mean, 95% CI)", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    if len(scored) > 1:
        _dedup_legend(ax)


def _guide_profile(ax, swept: Sequence[tuple[Mapping[str, Any], str]], metric: str) -> None:
    """guide --sweep: each block's mean (95% CI) at its mean t, the none/all arms as lines, the decision time t_c
    (with its ci95) and the profile's peak (with its bootstrap ci95) marked."""
    drawn = False
    for i, (doc, label) in enumerate(swept):
        sweep, color = doc["sweep"], f"C{i}"
        points = [(p["t_center"], p["metrics"][metric]) for p in sweep.get("profile") or []
                  if _is_number((p.get("metrics") or {}).get(metric, {}).get("mean"))]
        if not points:
            continue
        drawn = True
        ts, stats = [t for t, _ in points], [stat for _, stat in points]
        means = [stat["mean"] for stat in stats]
        errs = [_ci_err(stat["mean"], stat.get("ci95")) for stat in stats]
        yerr = [[e[0][0] for e in errs], [e[1][0] for e in errs]] if all(e is not None for e in errs) else None
        ax.errorbar(ts, means, yerr=yerr, fmt="o-", capsize=4, color=color,
                    label=f"{label}: blocks of {sweep['block_steps']} steps, {sweep.get('base', 'conditional')} base")
        for arm in doc.get("arms") or []:
            stat = (arm.get("metrics") or {}).get(metric)
            if arm["name"] in ("none", "all") and stat and _is_number(stat.get("mean")):
                ax.axhline(stat["mean"], color=color, linestyle=":" if arm["name"] == "none" else "--", linewidth=1)
                ax.annotate(arm["name"], (1.0, stat["mean"]), xycoords=("axes fraction", "data"), fontsize=8,
                            ha="right", va="bottom", color=color)
        critical = doc.get("critical") or {}
        if _is_number(critical.get("t")):
            ax.axvline(critical["t"], color=color, linewidth=1.2, alpha=0.8, label=f"t_c = {critical['t']:.2f}")
            if _valid_ci(critical.get("ci95")):
                ax.axvspan(*critical["ci95"], color=color, alpha=0.12)
        peak = sweep.get("peak") or {}
        if peak.get("metric") == metric and _is_number(peak.get("t")):
            stat = next(s for t, s in points if t == peak["t"]) if peak["t"] in ts else None
            y = stat["mean"] if stat else max(means)
            xerr = _ci_err(peak["t"], peak.get("ci95"))
            ax.errorbar([peak["t"]], [y], xerr=xerr, fmt="*", markersize=14, color=color, capsize=5,
                        label=f"peak t = {peak['t']:.2f}")
    if not drawn:
        _no_data(ax, f"no sweep profile for {metric}")
        return
    ax.set_xlabel("t = log(1 + σ²), mean over the block's steps")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} per block of steps (mean, 95% CI)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def _comparison_text(c: Mapping[str, Any]) -> str:
    parts = []
    p = c.get("p_value", c.get("wilcoxon_p"))  # wilcoxon_p: results of diffcrit 0.1
    if _is_number(p):
        parts.append(f"p = {p:.2g}")
    if _is_number(c.get("effect_size")):
        parts.append(f"effect {c['effect_size']:.2f}")
    return ", ".join(parts)


def _guide_title(docs: Sequence[Mapping[str, Any]], labels: Sequence[str]) -> str:
    parts = []
    for doc, label in zip(docs, labels, strict=True):
        critical = doc.get("critical") or {}
        text = f"{label}: t_c = {critical['t']:.2f}" if _is_number(critical.get("t")) else f"{label}: t_c ?"
        if _valid_ci(critical.get("ci95")):
            text += f" [{critical['ci95'][0]:.2f}, {critical['ci95'][1]:.2f}]"
        if _is_number(doc.get("window_width_t")):
            text += f", window Δt = {doc['window_width_t']:.2f}"
        parts.append(text)
    return "diffcrit guide — " + ";  ".join(parts)


# --------------------------------------------------------------------------------------------
# Shared helpers


def t_to_sigma(t):
    """sigma = sqrt(exp(t) - 1) (docs/design.md §2), vectorised; t < 0 maps to 0."""
    return np.sqrt(np.maximum(np.expm1(np.asarray(t, dtype=float)), 0.0))


def sigma_to_t(sigma):
    """t = log(1 + sigma^2) (docs/design.md §2), vectorised."""
    return np.log1p(np.asarray(sigma, dtype=float) ** 2)


def _sigma_axis(ax) -> None:
    top = ax.secondary_xaxis("top", functions=(t_to_sigma, sigma_to_t))
    lo, hi = ax.get_xlim()
    s_lo, s_hi = float(t_to_sigma(lo)), float(t_to_sigma(hi))
    ticks: list[float] = []
    for s in SIGMA_TICKS:  # keep ticks at least 5% of the axis apart (sigma crowds near t = 0)
        if s_lo <= s <= s_hi and (not ticks or sigma_to_t(s) - sigma_to_t(ticks[-1]) >= 0.05 * (hi - lo)):
            ticks.append(s)
    top.set_xticks(ticks, labels=[f"{s:g}" for s in ticks])
    top.set_xlabel("σ", labelpad=2)


def _stiffness_matrix(doc: Mapping[str, Any], sem: bool = False):
    """(t ascending, s[t, shell]) over the probed steps, optionally with the s.e.m.; None if none."""
    rows = [(float(step["t"]), step.get("stiffness"), step.get("stiffness_sem")) for step in doc.get("steps") or []
            if isinstance(step.get("stiffness"), list) and _is_number(step.get("t"))]
    if len(rows) < 2:
        return None
    rows.sort(key=lambda row: row[0])
    width = min(len(row[1]) for row in rows)
    t = np.array([row[0] for row in rows])
    s = np.array([[_nan(v) for v in row[1][:width]] for row in rows])
    if not sem:
        return t, s
    sem_rows = [row[2] if isinstance(row[2], list) and len(row[2]) >= width else [None] * width for row in rows]
    e = np.nan_to_num(np.array([[_nan(v) for v in r[:width]] for r in sem_rows]), nan=0.0)
    return t, s, e


def _series(doc: Mapping[str, Any], key: str) -> tuple[np.ndarray, np.ndarray]:
    rows = sorted((float(step["t"]), _nan(step.get(key))) for step in doc.get("steps") or []
                  if _is_number(step.get("t")))
    t = np.array([r[0] for r in rows])
    v = np.array([r[1] for r in rows])
    return t, v


def _ordered_steps(doc: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The steps that have a time t, in ascending t (the reverse of generation order)."""
    return sorted((s for s in doc.get("steps") or [] if _is_number(s.get("t"))), key=lambda s: float(s["t"]))


def _has(doc: Mapping[str, Any], key: str) -> bool:
    """Whether the result carries ``key`` in its steps at all (results of diffcrit 0.1.0 lack the ensemble keys)."""
    return any(key in s for s in doc.get("steps") or [])


def _probed(step: Mapping[str, Any]) -> bool:
    probed = step.get("probed")
    return probed if isinstance(probed, bool) else isinstance(step.get("stiffness"), list)


def _n_shells(doc: Mapping[str, Any]) -> int:
    return len(doc.get("shells") or []) or max((len(s.get("decided") or s.get("stiffness") or [])
                                                for s in doc.get("steps") or []), default=0)


def _decision_shell(doc: Mapping[str, Any]) -> int:
    shell = (doc.get("critical") or {}).get("decision_shell")
    return shell if isinstance(shell, int) and not isinstance(shell, bool) else 0


def _drawn_shells(doc: Mapping[str, Any]) -> list[int]:
    """Shells 0..LOW_SHELLS-1 and the decision shell."""
    return sorted(set(range(min(LOW_SHELLS, _n_shells(doc)))) | {_decision_shell(doc)} & set(range(_n_shells(doc))))


def _shell_matrix(steps: Sequence[Mapping[str, Any]], key: str, width: int) -> np.ndarray:
    """(S, width) values of a per-shell key; NaN where null, missing or not a list."""
    out = np.full((len(steps), width), np.nan)
    for i, step in enumerate(steps):
        row = step.get(key)
        if isinstance(row, list):
            out[i, :min(width, len(row))] = [_nan(v) for v in row[:width]]
    return out


def _band_matrix(steps: Sequence[Mapping[str, Any]], key: str, width: int) -> np.ndarray:
    """(S, width, 2) [lo, hi] of a per-shell interval key; NaN where null or missing."""
    out = np.full((len(steps), width, 2), np.nan)
    for i, step in enumerate(steps):
        for n, ci in enumerate((step.get(key) or [])[:width] if isinstance(step.get(key), list) else []):
            if isinstance(ci, (list, tuple)) and len(ci) == 2:
                out[i, n] = [_nan(ci[0]), _nan(ci[1])]
    return out


def _t_range(docs: Sequence[Mapping[str, Any]]) -> tuple[float, float]:
    ts = [float(step["t"]) for doc in docs for step in doc.get("steps") or [] if _is_number(step.get("t"))]
    if not ts:
        raise UserError("the results have no steps with a time t to plot")
    lo, hi = min(ts), max(ts)
    return (lo, hi) if hi > lo else (lo - 0.5, hi + 0.5)


def _labels(docs: Sequence[Mapping[str, Any]], labels: Sequence[str] | None) -> list[str]:
    if labels is not None:
        if len(labels) != len(docs):
            raise UserError(f"got {len(labels)} labels for {len(docs)} results", "give one label per result")
        return list(labels)
    names = [str((doc.get("model") or {}).get("id", f"result {i + 1}")) for i, doc in enumerate(docs)]
    if len(set(names)) < len(names):  # one model twice: tell the runs apart by their conditioning where it differs
        names = [name + (f" ({c})" if (c := describe_conditioning((doc.get("model") or {}).get("conditioning")))
                         else "") for name, doc in zip(names, docs, strict=True)]
    return [name if names.count(name) == 1 else f"{name} #{i + 1}" for i, name in enumerate(names)]


def _doc_handles(labels: Sequence[str]) -> list[Line2D]:
    if len(labels) < 2:
        return []
    return [Line2D([], [], color="#333333", linestyle=DOC_STYLES[i % len(DOC_STYLES)], label=label)
            for i, label in enumerate(labels)]


def _dedup_legend(ax) -> None:
    handles, names = ax.get_legend_handles_labels()
    unique = dict(zip(names, handles, strict=True))
    ax.legend(unique.values(), unique.keys(), fontsize=8)


def _offsets(n: int) -> np.ndarray:
    return (np.arange(n) - (n - 1) / 2) * (0.5 / max(n, 1)) if n > 1 else np.zeros(1)


def _ci_err(mean: float, ci: Any):
    if not _valid_ci(ci):
        return None
    return [[max(mean - ci[0], 0.0)], [max(ci[1] - mean, 0.0)]]


def _leading_digit(value: float) -> int:
    return int(round(value / 10 ** math.floor(math.log10(value)))) if value > 0 else 0


def _no_data(ax, text: str) -> None:
    ax.set_yticks([])
    lines = [wrapped for line in text.split("\n") for wrapped in textwrap.wrap(line, 44)]
    ax.text(0.5, 0.5, "\n".join(lines), ha="center", va="center", transform=ax.transAxes, fontsize=10,
            color="#555555", gid="note")


def _valid_ci(ci: Any) -> bool:
    return isinstance(ci, (list, tuple)) and len(ci) == 2 and all(_is_number(v) for v in ci)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _nan(value: Any) -> float:
    return float(value) if _is_number(value) else math.nan


# --------------------------------------------------------------------------------------------
# Image grids (guide --save-images, the built-ins' sample sheets)


def tiles(images, size: int | None = None) -> list:
    """Images (N, C, H, W) in [-1, 1] -> N PIL images: grey (channel 0) below 3 channels, else RGB
    (channels 0-2); ``size``: resized (nearest) to size x size."""
    from PIL import Image

    shown = images[:, :3] if images.shape[1] >= 3 else images[:, 0]
    pixels = ((shown.clamp(-1, 1) + 1) * 127.5).round().byte().numpy()
    pictures = [Image.fromarray(p.transpose(1, 2, 0) if p.ndim == 3 else p) for p in pixels]
    return [p.resize((size, size), Image.NEAREST) for p in pictures] if size else pictures


def image_grid(pictures: Sequence, cols: int, border: tuple[int, int, int, int] = (1, 1, 1, 1)):
    """Pictures of one size and mode in rows of ``cols`` (diffusers' ``make_image_grid``), each framed
    in white by ``border`` (left, top, right, bottom) pixels; cells past the last picture are white."""
    from diffusers.utils import make_image_grid
    from PIL import Image, ImageOps

    mode = pictures[0].mode
    cells = [ImageOps.expand(p, border, "white") for p in pictures]
    rows = math.ceil(len(cells) / cols)
    cells += [Image.new(mode, cells[0].size, "white")] * (rows * cols - len(cells))
    return make_image_grid(cells, rows, cols).convert(mode)
