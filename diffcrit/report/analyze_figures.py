"""The figure of analyze results: six panels over OU time t, one result alone or several overlaid.

Notation (docs/design.md §2, §3, §5): x axes are OU time t = log(1 + sigma^2), increasing to the right
(generation runs right to left), with a secondary sigma = sqrt(exp(t) - 1) axis on top.
Shell n holds wave number k_n = 2 pi n / L; stiffness s(k) = 1 - <v_k, J v_k>; the decided fraction
of a shell is Var D(y) / Var x0 over the samples; s_G = sigma^2 / (P_n + sigma^2) is the stiffness of a
Gaussian field with the samples' shell power P_n.

The panels: decided fractions, stiffness beside s_G, the instability fraction, the stiffness heatmap, the
correlation lengths and the markers. Results are read through ``report.view.AnalyzeView``; a curve a result
lacks (results of diffcrit 0.1.0) leaves its panel with a note.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, MaxNLocator

from ..analysis.class_decision import MARKER as CLASS_DECISION, MARKER_FB as CLASS_DECISION_FB
from ..analysis.detection import (CONSISTENT_BELOW, DECIDED_LEVEL, DECISION, INSTABILITY_ONSET, STIFFNESS_MIN,
                                  STIFFNESS_ZERO, XI_EQ_PEAK, XI_GROWTH)
from ..errors import UserError
from ..frame import sigma_to_t, t_to_sigma
from .drawing import ci_err, no_data, offsets
from .view import AnalyzeView, Marker, marker_order

LOW_SHELLS = 4  # stiffness curves drawn for shells 0..LOW_SHELLS-1
DOC_STYLES = ("-", "--", ":", "-.")
NULL_STYLE = (0, (1, 2.5))  # the Gaussian null's curves: sparse dots, unlike every DOC_STYLES entry
SHELL_COLORS = ("#1b4f9c", "#2a9d8f", "#e9a23b", "#b5485d", "#6c757d")
XI_SERIES = (("xi_state", "ξ(y) state", "#1f77b4"), ("xi_denoised", "ξ(D(y)) denoised", "#d62728"),
             ("xi_eq", "ξ_eq dispersion", "#2ca02c"))
MARKER_STYLES = {  # every marker of docs/design.md §6 (analysis.detection.MARKERS): shape, colour, meaning
    DECISION: ("D", "#111111", "decided fraction crosses ½"),
    INSTABILITY_ONSET: ("o", "#b5485d", "instability fraction turns positive"),
    STIFFNESS_ZERO: ("o", "#1b4f9c", "s₀ = 0"),
    STIFFNESS_MIN: ("v", "#2a9d8f", "min s₀"),
    XI_EQ_PEAK: ("^", "#2ca02c", "peak ξ_eq"),
    XI_GROWTH: ("s", "#d62728", "fastest ξ(D) growth"),
    CLASS_DECISION: ("*", "#7b3294", "clone pairs' class agreement halfway"),
    CLASS_DECISION_FB: ("X", "#c2a5cf", "regenerated finals keep class halfway"),
}
SIGMA_TICKS = (0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500)

PANELS = {"decided": (0, 0), "stiffness": (0, 1), "unstable": (0, 2), "heatmap": (1, 0), "xi": (1, 1),
          "markers": (1, 2)}
CURVE_PANELS = ("decided", "stiffness", "unstable", "xi")  # get the primary band, step rug and inconsistent shading
DECIDED_YMAX = 1.6  # decided fractions above are clipped (they reach 40 at inconsistent steps)
INCONSISTENT_COLOR = "#e07b39"
PRIMARY_COLOR = "#555555"
NOT_IN = "not in this result"
LEGACY_ROW = "critical.t"  # results before the primary marker: critical.t was the median of the markers


def draw_analyze(fig: Figure, views: Sequence[AnalyzeView], labels: Sequence[str]) -> None:
    """1. decided fractions  2. stiffness and s_G  3. instability fraction  4. heatmap  5. xi  6. markers."""
    grid = fig.add_gridspec(2, 3)
    axes = {name: fig.add_subplot(grid[row, col]) for name, (row, col) in PANELS.items()}
    t_lo, t_hi = _t_range(views)
    for name, ax in axes.items():
        ax.set_gid(name)
        ax.set_xlim(t_lo, t_hi)
        _sigma_axis(ax)
        ax.set_xlabel("t = log(1 + σ²)   (generation runs ←)", fontsize=9)
    _heatmap(fig, axes["heatmap"], views, labels)
    for name in CURVE_PANELS:  # shading first, so curves draw over it
        for i, v in enumerate(views):
            _inconsistent_spans(axes[name], v)
            _critical_band(axes[name], v, DOC_STYLES[i % len(DOC_STYLES)])
    _decided_curves(axes["decided"], views, labels)
    _stiffness_curves(axes["stiffness"], views, labels)
    _unstable_curves(axes["unstable"], views, labels)
    _xi_curves(axes["xi"], views, labels)
    _markers_panel(axes["markers"], views, labels)
    for name in CURVE_PANELS:
        _step_rug(axes[name], views)
    _figure_legend(fig, views, labels)
    fig.suptitle(_analyze_title(views, labels), fontsize=12)


def _heatmap(fig: Figure, ax, views: Sequence[AnalyzeView], labels: Sequence[str]) -> None:
    """Stiffness over (t, shell); with several results, the last minus the first on a common grid."""
    first = _stiffness_matrix(views[0])
    if len(views) == 1 or first is None:
        if first is None:
            no_data(ax, "no stiffness in this result (probes off)")
            return
        t, s = first[:2]
        lo, hi = float(np.nanmin(s)), float(np.nanmax(s))
        # s reaches -1/sigma^2 at y = 0: colours saturate at -1, the colour bar says so
        spread = max(abs(max(lo, -1.0)), abs(hi), 1e-6)
        vmin = min(max(lo, -1.0), -1e-3 * spread)
        norm = TwoSlopeNorm(vcenter=0.0, vmin=vmin, vmax=max(hi, 1e-3 * spread))
        mesh = ax.pcolormesh(t, np.arange(s.shape[1]), s.T, cmap="RdBu", norm=norm, shading="nearest")
        fig.colorbar(mesh, ax=ax, label="stiffness s = 1 − g", pad=0.01, extend="min" if lo < vmin else "neither")
        ax.set_title("stiffness over (t, shell): blue relaxes, red is unstable", fontsize=10)
    else:
        last = _stiffness_matrix(views[-1])
        if last is None:
            no_data(ax, f"no stiffness in {labels[-1]}")
            return
        shells = min(first[1].shape[1], last[1].shape[1])
        lo, hi = max(first[0][0], last[0][0]), min(first[0][-1], last[0][-1])
        if not hi > lo:
            no_data(ax, "the t ranges do not overlap")
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


def _decided_curves(ax, views: Sequence[AnalyzeView], labels: Sequence[str]) -> None:
    """Decided fraction Var D(y) / Var x0 per shell with its ci95 band, the decision level and the consistency limit."""
    notes, drawn, peak = [], set(), 0.0
    for i, v in enumerate(views):
        decided = v.curve("decided")
        if decided is None:
            notes.append((labels[i], "decided fraction " + NOT_IN))
            continue
        t, shell, band = v.steps.t, v.decision_shell, v.curve("decided_ci95")
        band = band if band is not None else np.full(decided.shape + (2,), np.nan)
        # the Gaussian null of docs/design.md §6a: sampled through the model's sampler, else the formula's
        null = v.curve("null_decided") if v.steps.has("null_decided").any() else v.curve("gaussian_decided")
        flat = []
        for n in v.drawn_shells(LOW_SHELLS):
            if not np.isfinite(decided[:, n]).any():
                flat.append(n)
                continue
            color = SHELL_COLORS[n % len(SHELL_COLORS)]
            ax.fill_between(t, band[:, n, 0], band[:, n, 1], color=color, alpha=0.18, linewidth=0,
                            gid=f"decided-band:{i}:{n}")
            ax.plot(t, decided[:, n], DOC_STYLES[i % len(DOC_STYLES)], color=color,
                    linewidth=2.2 if n == shell else 1.3, gid=f"decided:{i}:{n}")
            # beside other results only the decision shell's null
            if null is not None and np.isfinite(null[:, n]).any() and (len(views) == 1 or n == shell):
                ax.plot(t, null[:, n], linestyle=NULL_STYLE, color=color, linewidth=1.0, alpha=0.9,
                        gid=f"gaussian-decided:{i}:{n}")
            drawn.add(n)
            peak = max(peak, float(np.nanmax(decided[:, n])))
        if flat:
            shells = f"shell{'s' if len(flat) > 1 else ''} {_ranges(flat)}"
            notes.append((labels[i], f"{shells}: samples do not vary (no decided fraction)"))
        marker = v.critical.marker(DECISION)
        if marker is not None:
            ax.errorbar([marker.t], [DECIDED_LEVEL], xerr=ci_err(marker.t, marker.ci95), fmt="D",
                        color="black", markersize=6, capsize=4, zorder=5, gid=f"decision-marker:{i}")
    if not drawn:
        no_data(ax, "\n".join(_note_lines(notes, labels)) or "no decided fractions in these results")
        ax.set_title("decided fraction Var D(y) / Var x₀ per shell", fontsize=10)
        return
    ax.axhline(DECIDED_LEVEL, color="black", linestyle="--", linewidth=0.9, gid="decision-level")
    ax.axhline(CONSISTENT_BELOW, color=INCONSISTENT_COLOR, linestyle=":", linewidth=1.3, gid="consistency-limit")
    top = min(max(peak + 0.05, CONSISTENT_BELOW + 0.1), DECIDED_YMAX)
    ax.set_ylim(_above_rug(top), top)
    if peak > top:
        notes.append((None, f"clipped: the decided fraction reaches {peak:.3g}"))
    handles = [Line2D([], [], color="black", linestyle="--", linewidth=0.9, label="½: decision level"),
               Line2D([], [], color=INCONSISTENT_COLOR, linestyle=":", linewidth=1.3,
                      label=f"{CONSISTENT_BELOW:g}: consistency limit")]
    if any(v.critical.marker(DECISION) for v in views):
        handles.append(Line2D([], [], marker="D", color="black", linestyle="none", label="decision, 95% CI"))
    if any(v.curve("gaussian_decided") is not None for v in views):
        handles.append(Line2D([], [], color="gray", linestyle=NULL_STYLE, linewidth=1.0,
                              label="Gaussian null (same spectrum and sampler)"))
    ax.legend(handles=handles, fontsize=7, loc="best", framealpha=0.85)
    _notes(ax, _note_lines(notes, labels))
    ax.set_ylabel("decided fraction   (band: 95% CI)")
    ax.set_title("decided fraction Var D(y) / Var x₀ per shell", fontsize=10)


def _stiffness_curves(ax, views: Sequence[AnalyzeView], labels: Sequence[str]) -> None:
    """Measured stiffness at the probed steps (band: ± s.e.m.) and the Gaussian reference s_G, dashed."""
    notes, drawn, lowest = [], set(), 0.0
    for i, v in enumerate(views):
        gaussian = v.curve("gaussian_stiffness")
        if gaussian is None:
            notes.append((labels[i], "Gaussian reference s_G " + NOT_IN))
        matrix = _stiffness_matrix(v)
        if matrix is None:
            notes.append((labels[i], "no stiffness (probes off)"))
        for n in v.drawn_shells(LOW_SHELLS):
            color = SHELL_COLORS[n % len(SHELL_COLORS)]
            if gaussian is not None and np.isfinite(gaussian[:, n]).any():
                ax.plot(v.steps.t, gaussian[:, n], linestyle=(0, (4, 2)), color=color, linewidth=0.9, alpha=0.8,
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
        no_data(ax, "\n".join(_note_lines(notes, labels)) or "no stiffness in these results")
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


def _unstable_curves(ax, views: Sequence[AnalyzeView], labels: Sequence[str]) -> None:
    """Share of probe trajectories with shell stiffness < 0: the decision shell with its ci95 band, the rest thin."""
    notes, drawn = [], set()
    for i, v in enumerate(views):
        unstable = v.curve("unstable_fraction")
        if unstable is None:
            notes.append((labels[i], "instability fraction " + NOT_IN))
            continue
        measured = np.isfinite(unstable).any(1)
        if not measured.any():
            at_zero = v.config.get("linearize_at") == "zero" or v.critical.regime == "zero"
            notes.append((labels[i], "not measured: linearized at y = 0\n(no trajectories)" if at_zero
                          else "no probed steps"))
            continue
        t, shell, unstable = v.steps.t[measured], v.decision_shell, unstable[measured]
        band = v.curve("unstable_fraction_ci95")
        band = band[measured] if band is not None else np.full(unstable.shape + (2,), np.nan)
        for n in v.drawn_shells(LOW_SHELLS):
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
        marker = v.critical.marker(INSTABILITY_ONSET)
        if marker is not None:
            ax.errorbar([marker.t], [0.0], xerr=ci_err(marker.t, marker.ci95), fmt="o",
                        color=MARKER_STYLES[INSTABILITY_ONSET][1], markersize=6, capsize=4, zorder=5,
                        gid=f"onset-marker:{i}")
    if not drawn:
        no_data(ax, "\n".join(_note_lines(notes, labels)) or "no instability fraction in these results")
        ax.set_title("instability fraction (share with s < 0)", fontsize=10)
        return
    ax.set_ylim(_above_rug(1.04), 1.04)
    if any(v.critical.marker(INSTABILITY_ONSET) for v in views):
        ax.legend(handles=[Line2D([], [], marker="o", color=MARKER_STYLES[INSTABILITY_ONSET][1], linestyle="none",
                                  label="instability onset, 95% CI")], fontsize=7, loc="upper right", framealpha=0.85)
    _notes(ax, _note_lines(notes, labels), loc="center right")
    ax.set_ylabel("share of trajectories with s < 0   (band: 95% CI)", fontsize=9)
    ax.set_title("instability fraction (thick: decision shell)", fontsize=10)


def _xi_curves(ax, views: Sequence[AnalyzeView], labels: Sequence[str]) -> None:
    """xi(y), xi(D(y)) at every step, xi_eq at the probed steps; undefined values are gaps (NaN), never 0."""
    drawn, notes = set(), []
    for i, v in enumerate(views):
        for key, name, color in XI_SERIES:
            xi = v.curve(key)
            # xi_eq is measured at probed steps only: connect those, leave gaps where undefined
            kept = v.steps.probed if key == "xi_eq" else np.ones(len(v.steps), dtype=bool)
            if xi is None or not kept.any():
                continue
            t, xi = v.steps.t[kept], xi[kept]
            xi[~(xi > 0)] = np.nan  # undefined (null; 0 in results of diffcrit 0.1.0): a gap
            undefined = int(np.isnan(xi).sum())
            where = "probed steps" if key == "xi_eq" else "steps"
            if undefined == len(xi):
                notes.append((labels[i], f"{name.split()[0]} undefined at every {where[:-1]}"))
            elif undefined:
                notes.append((labels[i], f"{name.split()[0]} undefined at {undefined} of {len(xi)} {where} (gaps)"))
            if np.isfinite(xi).any():
                ax.plot(t, xi, DOC_STYLES[i % len(DOC_STYLES)], color=color, linewidth=1.6,
                        marker="." if key == "xi_eq" else None, markersize=4, gid=f"{key}:{i}")
                drawn.add(key)
    ax.set_title("correlation lengths of state, denoised and dispersion", fontsize=10)
    if not drawn:
        no_data(ax, "\n".join(_note_lines(notes, labels)) or "no correlation lengths in these results")
        return
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}" if _leading_digit(v) in (2, 5) else ""))
    handles = [Line2D([], [], color=color, linewidth=2, label=name) for key, name, color in XI_SERIES if key in drawn]
    ax.legend(handles=handles, fontsize=7, loc="upper right", framealpha=0.85)
    _notes(ax, _note_lines(notes, labels), loc="lower left")
    ax.set_ylabel("correlation length ξ (pixels)")


def _markers_panel(ax, views: Sequence[AnalyzeView], labels: Sequence[str]) -> None:
    """One row per marker: its t with the bootstrap ci95, its presence, its modes when multimodal."""
    names = marker_order({name for v in views for name in v.critical.markers})
    legacy = [i for i, v in enumerate(views) if v.critical.primary is None and v.critical.t is not None]
    rows = names + ([LEGACY_ROW] if legacy else [])
    if not rows:
        no_data(ax, "no markers in these results")
        return
    y_of = {name: len(rows) - 1 - j for j, name in enumerate(rows)}
    shifts = offsets(len(views)) * 1.2
    for name in names:
        missing = [label for v, label in zip(views, labels, strict=True) if v.critical.marker(name) is None]
        if missing:
            text = "not found" if len(missing) == len(views) else f"not found: {', '.join(missing)}"
            ax.text(0.01, y_of[name], text, fontsize=7, color="#888888", va="center",
                    transform=ax.get_yaxis_transform())
    for i, v in enumerate(views):
        shape = "os^D"[i % 4] if len(views) > 1 else None
        for name in names:
            marker = v.critical.marker(name)
            if marker is not None:
                m_shape, color, _ = MARKER_STYLES.get(name, ("P", "#555555", name))
                _marker_point(ax, marker, y_of[name] - shifts[i], shape or m_shape, color, i, len(views) > 1)
        if i in legacy:
            median = Marker(LEGACY_ROW, v.critical.t, v.critical.ci95, None, False, (), None, None)
            _marker_point(ax, median, y_of[LEGACY_ROW] - shifts[i], shape or "D", "black", i, len(views) > 1)
    ax.set_yticks([y_of[r] for r in rows], labels=[_marker_label(r, views, labels) for r in rows], fontsize=8)
    for tick, name in zip(ax.get_yticklabels(), rows, strict=True):
        if any(v.critical.primary == name for v in views):
            tick.set_fontweight("bold")
    ax.set_ylim(-0.7, len(rows) - 0.3)
    ax.grid(axis="x", alpha=0.3)
    handles = [Line2D([], [], color="#333333", marker="|", markersize=8, label="bootstrap 95% CI")]
    if any(m.multimodal for v in views for m in v.critical.markers.values()):
        handles.append(Line2D([], [], color="#333333", marker="o", mfc="none", linestyle="none",
                              label="bootstrap modes (multimodal)"))
    if len(views) > 1:
        handles += [Line2D([], [], color="#333333", marker="os^D"[i % 4], linestyle="none", label=label)
                    for i, label in enumerate(labels)]
    ax.legend(handles=handles, fontsize=7, loc="lower right", framealpha=0.85)
    ax.set_title("markers: t, 95% CI, presence", fontsize=10)


def _marker_point(ax, marker: Marker, y: float, shape: str, color: str, i: int, overlay: bool) -> None:
    """A marker's t with its ci95, its bootstrap modes when multimodal, and a note of presence."""
    ax.errorbar([marker.t], [y], xerr=ci_err(marker.t, marker.ci95), fmt=shape, color=color, markersize=7,
                capsize=4, linewidth=1.4, gid=f"marker:{marker.name}:{i}")
    if marker.multimodal or len(marker.modes) > 1:
        ax.plot(marker.modes, [y] * len(marker.modes), "o", mfc="none", color=color, markersize=9, linestyle="none",
                gid=f"modes:{marker.name}:{i}")
    text = _marker_text(marker, with_t=not overlay)
    if not text:
        return
    style = {"fontsize": 7, "color": "#b5485d" if marker.multimodal else "#333333", "textcoords": "offset points"}
    if overlay:  # beside the interval, so the rows of several results do not collide
        right = max([marker.t] + ([marker.ci95[1]] if marker.ci95 else []))
        ax.annotate(text, (right, y), xytext=(6, 0), ha="left", va="center", **style)
    else:
        ax.annotate(text, (marker.t, y), xytext=(0, 7), ha="center", **style)


def _marker_label(name: str, views: Sequence[AnalyzeView], labels: Sequence[str]) -> str:
    if name == LEGACY_ROW:
        return "critical.t (median)"
    primaries = [label for v, label in zip(views, labels, strict=True) if v.critical.primary == name]
    if not primaries:
        return name
    if len(views) == 1 or len(primaries) == len(views):
        return f"{name}* (primary)"
    return f"{name}* (primary: {', '.join(primaries)})"


def _marker_text(marker: Marker, with_t: bool = True) -> str:
    parts = [f"{marker.t:.2f}"] if with_t else []
    if marker.presence is not None:
        parts.append(f"presence {marker.presence:.0%}")
    if marker.multimodal:
        parts.append(f"multimodal ({len(marker.modes)} modes)" if with_t else "multimodal")
    return ", ".join(parts)


def _critical_band(ax, v: AnalyzeView, style: str) -> None:
    """The primary marker's t (line) and ci95 (band) over a curve panel."""
    if not v.critical.located:
        return
    ax.axvline(v.critical.t, color=PRIMARY_COLOR, linestyle=style, linewidth=1.0, gid="critical")
    if v.critical.ci95 is not None:
        ax.axvspan(*v.critical.ci95, color=PRIMARY_COLOR, alpha=0.13, linewidth=0, gid="critical-band")


def _inconsistent_spans(ax, v: AnalyzeView) -> None:
    """Shade the steps whose x0 estimate is inconsistent, each reaching halfway to its neighbours."""
    t, bad = v.steps.t, v.steps.inconsistent
    if not bad.any():
        return
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


def _step_rug(ax, views: Sequence[AnalyzeView]) -> None:
    """Ticks at the bottom edge at every step's t: short and grey, tall and dark where probed."""
    ylim = ax.get_ylim()
    for i, v in enumerate(views):
        base = 0.055 * i
        probed, plain = v.steps.t[v.steps.probed], v.steps.t[~v.steps.probed]
        if len(plain):
            ax.vlines(plain, base, base + 0.025, transform=ax.get_xaxis_transform(), color="#9a9a9a",
                      linewidth=0.8, gid="steps")
        if len(probed):
            ax.vlines(probed, base, base + 0.05, transform=ax.get_xaxis_transform(), color="#222222",
                      linewidth=1.3, gid="steps-probed")
    ax.set_ylim(ylim)


def _above_rug(top: float) -> float:
    """The lower y limit that puts 0 just above the step rug (the lowest 7% of the panel)."""
    return -0.075 * top / 0.925


def _analyze_title(views: Sequence[AnalyzeView], labels: Sequence[str]) -> str:
    if len(views) == 1:
        model = views[0].model
        shape = "×".join(str(n) for n in model.shape)
        return f"diffcrit analyze — {model.id} ({', '.join(filter(None, (shape, model.conditioned())))})\n" \
               f"{_tc_text(views[0])}"  # two lines: the t_c text alone runs to a figure's width
    sep = ";  " if len(views) <= 2 else "\n"
    return "diffcrit analyze — " + sep.join(f"{label}: {_tc_text(v, short=True)}"
                                            for label, v in zip(labels, views, strict=True))


def _tc_text(v: AnalyzeView, short: bool = False) -> str:
    critical = v.critical
    if critical.transition is not None and not critical.found and critical.regime != "zero":
        return "no transition beyond a Gaussian crossover" if short else critical.transition_words()
    if not critical.located:
        return "no critical point" + (f" ({critical.primary} not found)" if critical.primary else "")
    text = f"t_c = {critical.t:.2f}"
    if critical.transition is not None and critical.transition.evidence:
        text = f"transition in shell {critical.transition.shell}: {text}"
    if critical.ci95 is not None:
        text += f" [{critical.ci95[0]:.2f}, {critical.ci95[1]:.2f}]"
    if critical.primary:
        text += f" ({critical.primary})"
    if short:
        return text
    if critical.sigma is not None:
        text += f", σ = {critical.sigma:.2f}"
    if critical.step is not None:
        text += f", step {critical.step}/{v.n_steps}"
    if critical.regime:
        text += f", linearized at {'y = 0' if critical.regime == 'zero' else 'the trajectories'}"
    return text


def _shell_handles(shells: Sequence[int], views: Sequence[AnalyzeView]) -> list[Line2D]:
    decision = {v.decision_shell for v in views if v.critical.decision_shell is not None}
    return [Line2D([], [], color=SHELL_COLORS[n % len(SHELL_COLORS)], linewidth=2.2 if n in decision else 1.4,
                   label=f"shell {n}" + (" (decision)" if n in decision else "")) for n in shells]


def _figure_legend(fig: Figure, views: Sequence[AnalyzeView], labels: Sequence[str]) -> None:
    """One legend below the panels for what they share: shell colours, bands, the step rug, line styles."""
    shells = sorted({n for v in views for n in v.drawn_shells(LOW_SHELLS)})
    handles = _shell_handles(shells, views) + _band_handles(views)
    handles.append(Line2D([], [], color="#222222", marker="|", markersize=9, linestyle="none",
                          label="steps (tall: probed)"))
    handles += _doc_handles(labels)
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 9), fontsize=8, frameon=False)


def _band_handles(views: Sequence[AnalyzeView]) -> list:
    handles = []
    if any(v.critical.found for v in views):
        primaries = {v.critical.primary for v in views} - {None}
        name = f"critical t ({', '.join(sorted(primaries))})" if primaries else "critical t"
        handles.append(Patch(facecolor=PRIMARY_COLOR, alpha=0.3, edgecolor=PRIMARY_COLOR, label=f"{name}, 95% CI"))
    if any(v.steps.inconsistent.any() for v in views):
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




def _sigma_axis(ax) -> None:
    """sigma = sqrt(exp(t) - 1) on top (docs/design.md §2), ticks at round values at least 5% of the axis apart."""
    top = ax.secondary_xaxis("top", functions=(t_to_sigma, sigma_to_t))
    lo, hi = ax.get_xlim()
    s_lo, s_hi = t_to_sigma(lo), t_to_sigma(hi)
    ticks: list[float] = []
    for s in SIGMA_TICKS:  # sigma crowds near t = 0
        if s_lo <= s <= s_hi and (not ticks or sigma_to_t(s) - sigma_to_t(ticks[-1]) >= 0.05 * (hi - lo)):
            ticks.append(s)
    top.set_xticks(ticks, labels=[f"{s:g}" for s in ticks])
    top.set_xlabel("σ", labelpad=2)


def _stiffness_matrix(v: AnalyzeView) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(t ascending, s[t, shell], s.e.m. with 0 where unknown) over the probed steps; None if fewer than 2."""
    probed = v.steps.has("stiffness")
    if probed.sum() < 2:
        return None
    sem = v.curve("stiffness_sem")
    sem = np.zeros((probed.sum(), v.steps.n_shells)) if sem is None else np.nan_to_num(sem[probed], nan=0.0)
    return v.steps.t[probed], v.curve("stiffness")[probed], sem


def _t_range(views: Sequence[AnalyzeView]) -> tuple[float, float]:
    ts = [t for v in views for t in v.steps.t]
    if not ts:
        raise UserError("the results have no steps with a time t to plot")
    lo, hi = min(ts), max(ts)
    return (lo, hi) if hi > lo else (lo - 0.5, hi + 0.5)


def _doc_handles(labels: Sequence[str]) -> list[Line2D]:
    if len(labels) < 2:
        return []
    return [Line2D([], [], color="#333333", linestyle=DOC_STYLES[i % len(DOC_STYLES)], label=label)
            for i, label in enumerate(labels)]


def _leading_digit(value: float) -> int:
    return int(round(value / 10 ** math.floor(math.log10(value)))) if value > 0 else 0
