"""Figures of analyze and guide results, drawn headless (the Agg canvas, no pyplot state).

Notation (DESIGN.md §2, §3): x axes are OU time t = log(1 + sigma^2), increasing to the right
(generation runs right to left), with a secondary sigma = sqrt(exp(t) - 1) axis on top.
Shell n holds wave number k_n = 2 pi n / L; stiffness s(k) = 1 - <v_k, J v_k>.

``plot_results(docs, path)`` is the entry point: one result draws alone, several overlay
(line style per result); a guide result draws each arm's metrics and the paired differences.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, MaxNLocator

from .checking import MARKERS
from .errors import UserError
from .io import atomic_write_bytes
from .report import KIND_ANALYZE, result_kind

FORMATS = {".png": "png", ".svg": "svg", ".pdf": "pdf"}
FIGSIZE_IN = (13.0, 8.5)
DPI = 100  # a PNG is FIGSIZE_IN * DPI pixels: 1300 x 850

LOW_SHELLS = 4  # stiffness curves drawn for shells 0..LOW_SHELLS-1
DOC_STYLES = ("-", "--", ":", "-.")
SHELL_COLORS = ("#1b4f9c", "#2a9d8f", "#e9a23b", "#b5485d", "#6c757d")
XI_SERIES = (("xi_state", "ξ(y) state", "#1f77b4"), ("xi_denoised", "ξ(D(y)) denoised", "#d62728"),
             ("xi_eq", "ξ_eq dispersion", "#2ca02c"))
MARKER_STYLES = {"stiffness_zero": ("o", "#1b4f9c", "s₀ = 0"), "stiffness_min": ("v", "#2a9d8f", "min s₀"),
                 "xi_eq_peak": ("^", "#2ca02c", "peak ξ_eq"), "xi_growth": ("s", "#d62728", "fastest ξ(D) growth")}
SIGMA_TICKS = (0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500)


def plot_results(docs: Sequence[Mapping[str, Any]], path: Path | str,
                 labels: Sequence[str] | None = None) -> Path:
    """Draw result documents (all analyze or all guide) into ``path`` (.png, .svg or .pdf)."""
    path = Path(path)
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise UserError(f"cannot tell the figure format of {path}", f"use one of {', '.join(FORMATS)}")
    fig = make_figure(docs, labels)
    buffer = io.BytesIO()
    fig.savefig(buffer, format=fmt, dpi=DPI)
    atomic_write_bytes(path, buffer.getvalue())
    return path


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


def _draw_analyze(fig: Figure, docs: Sequence[Mapping[str, Any]], labels: Sequence[str]) -> None:
    """1. heatmap  2. low-shell stiffness  3. xi curves  4. markers and consensus t_c."""
    grid = fig.add_gridspec(2, 2)
    ax_heat, ax_stiff = fig.add_subplot(grid[0, 0]), fig.add_subplot(grid[0, 1])
    ax_xi, ax_mark = fig.add_subplot(grid[1, 0]), fig.add_subplot(grid[1, 1])
    t_lo, t_hi = _t_range(docs)
    for ax in (ax_heat, ax_stiff, ax_xi, ax_mark):
        ax.set_xlim(t_lo, t_hi)
        _sigma_axis(ax)
        ax.set_xlabel("t = log(1 + σ²)   (generation runs ←)")
    _heatmap(fig, ax_heat, docs, labels)
    _stiffness_curves(ax_stiff, docs, labels)
    _xi_curves(ax_xi, docs, labels)
    _markers_panel(ax_mark, docs, labels)
    for ax in (ax_stiff, ax_xi):
        for i, doc in enumerate(docs):
            _critical_band(ax, doc, DOC_STYLES[i % len(DOC_STYLES)])
    fig.suptitle(_analyze_title(docs, labels), fontsize=13)


def _heatmap(fig: Figure, ax, docs: Sequence[Mapping[str, Any]], labels: Sequence[str]) -> None:
    """Stiffness over (t, shell); with several results, the last minus the first on a common grid."""
    first = _stiffness_matrix(docs[0])
    if len(docs) == 1 or first is None:
        if first is None:
            _no_data(ax, "no stiffness in this result (probes off)")
            return
        t, s = first
        spread = max(abs(float(np.nanmin(s))), abs(float(np.nanmax(s))), 1e-6)
        norm = TwoSlopeNorm(vcenter=0.0, vmin=min(float(np.nanmin(s)), -1e-3 * spread),
                            vmax=max(float(np.nanmax(s)), 1e-3 * spread))
        mesh = ax.pcolormesh(t, np.arange(s.shape[1]), s.T, cmap="RdBu", norm=norm, shading="nearest")
        fig.colorbar(mesh, ax=ax, label="stiffness s = 1 − g", pad=0.01)
        ax.set_title("mode stiffness over (t, shell): blue relaxes, red is unstable (s < 0)", fontsize=10)
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
        diff = np.stack([np.interp(t, last[0], last[1][:, n]) - np.interp(t, first[0], first[1][:, n])
                         for n in range(shells)], axis=1)
        bound = max(float(np.abs(diff).max()), 1e-6)
        mesh = ax.pcolormesh(t, np.arange(shells), diff.T, cmap="PuOr_r", vmin=-bound, vmax=bound, shading="nearest")
        fig.colorbar(mesh, ax=ax, label="Δ stiffness", pad=0.01)
        ax.set_title(f"Δ stiffness: {labels[-1]} − {labels[0]}", fontsize=10)
    ax.set_ylabel("shell n   (k_n = 2πn / L)")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))


def _stiffness_curves(ax, docs: Sequence[Mapping[str, Any]], labels: Sequence[str]) -> None:
    ax.axhline(0.0, color="black", linewidth=0.8)
    drawn = 0
    for i, doc in enumerate(docs):
        matrix = _stiffness_matrix(doc, sem=True)
        if matrix is None:
            continue
        t, s, sem = matrix
        for n in range(min(LOW_SHELLS, s.shape[1])):
            color = SHELL_COLORS[n % len(SHELL_COLORS)]
            ax.plot(t, s[:, n], DOC_STYLES[i % len(DOC_STYLES)], color=color, linewidth=1.6)
            ax.fill_between(t, s[:, n] - sem[:, n], s[:, n] + sem[:, n], color=color, alpha=0.15, linewidth=0)
            drawn += 1
    if not drawn:
        _no_data(ax, "no stiffness in these results")
        return
    n_shells = min(LOW_SHELLS, max(len(doc.get("shells") or []) for doc in docs))
    handles = [Line2D([], [], color=SHELL_COLORS[n], linewidth=2, label=f"shell {n}") for n in range(n_shells)]
    ax.legend(handles=handles + _doc_handles(labels), fontsize=8, loc="lower right", ncol=2)
    ax.set_ylabel("stiffness s(k)   (band: ± s.e.m.)")
    ax.set_title("lowest shells: softening (s → 0) and instability (s < 0)", fontsize=10)


def _xi_curves(ax, docs: Sequence[Mapping[str, Any]], labels: Sequence[str]) -> None:
    drawn = set()
    for i, doc in enumerate(docs):
        for key, _, color in XI_SERIES:
            t, v = _series(doc, key)
            v = np.where(v > 0, v, np.nan)  # log axis
            if key == "xi_eq":  # defined at probed steps only (auto schedule): connect those points
                t, v = t[np.isfinite(v)], v[np.isfinite(v)]
            if np.isfinite(v).sum() >= 2:
                ax.plot(t, v, DOC_STYLES[i % len(DOC_STYLES)], color=color, linewidth=1.6)
                drawn.add(key)
    if not drawn:
        _no_data(ax, "no correlation lengths in these results")
        return
    ax.set_yscale("log")
    plain = FuncFormatter(lambda v, _: f"{v:g}")
    ax.yaxis.set_major_formatter(plain)
    ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}" if _leading_digit(v) in (2, 5) else ""))
    handles = [Line2D([], [], color=color, linewidth=2, label=name) for key, name, color in XI_SERIES if key in drawn]
    ax.legend(handles=handles + _doc_handles(labels), fontsize=8, loc="upper right", ncol=2)
    ax.set_ylabel("correlation length ξ (pixels)")
    ax.set_title("correlation lengths of state, denoised and dispersion", fontsize=10)


def _markers_panel(ax, docs: Sequence[Mapping[str, Any]], labels: Sequence[str]) -> None:
    """One row per result: each marker's t, and the consensus t_c with its 95% CI."""
    rows = np.arange(len(docs))[::-1]
    seen = set()
    for row, doc in zip(rows, docs):
        critical = doc.get("critical") or {}
        markers = critical.get("markers") or {}
        for j, name in enumerate(list(MARKERS) + sorted(set(markers) - set(MARKERS))):
            t_m = (markers.get(name) or {}).get("t")
            if not _is_number(t_m):
                continue
            shape, color, _ = MARKER_STYLES.get(name, ("P", "#555555", name))
            ax.plot([t_m], [row + 0.18 - 0.09 * j], shape, color=color, markersize=8, linestyle="none")
            seen.add(name)
        if critical.get("found") and _is_number(critical.get("t")):
            t_c = critical["t"]
            ci = critical.get("ci95")
            if _valid_ci(ci):
                ax.errorbar([t_c], [row - 0.25], xerr=[[t_c - ci[0]], [ci[1] - t_c]], fmt="D", color="black",
                            markersize=8, capsize=5, linewidth=1.6)
            else:
                ax.plot([t_c], [row - 0.25], "D", color="black", markersize=8)
            ax.annotate(_tc_text(doc, short=True), (t_c, row - 0.25), textcoords="offset points", xytext=(10, -14),
                        fontsize=8)
            seen.add("consensus")
        else:
            ax.text(0.5, row, "no critical point found", transform=ax.get_yaxis_transform(), ha="center",
                    va="center", fontsize=9, color="#b5485d")
    ax.set_yticks(rows, labels=list(labels))
    ax.set_ylim(-0.8, len(docs) - 0.2)
    handles = [Line2D([], [], marker=MARKER_STYLES[m][0], color=MARKER_STYLES[m][1], linestyle="none",
                      label=MARKER_STYLES[m][2]) for m in MARKERS if m in seen]
    if "consensus" in seen:
        handles.append(Line2D([], [], marker="D", color="black", label="consensus t_c, 95% CI"))
    if handles:
        ax.legend(handles=handles, fontsize=8, loc="upper right")
    ax.set_title("markers (DESIGN.md §5) and consensus critical time", fontsize=10)
    ax.grid(axis="x", alpha=0.3)


def _critical_band(ax, doc: Mapping[str, Any], style: str) -> None:
    critical = doc.get("critical") or {}
    if not (critical.get("found") and _is_number(critical.get("t"))):
        return
    ax.axvline(critical["t"], color="#444444", linestyle=style, linewidth=1.0)
    if _valid_ci(critical.get("ci95")):
        ax.axvspan(*critical["ci95"], color="#888888", alpha=0.12, linewidth=0)


def _analyze_title(docs: Sequence[Mapping[str, Any]], labels: Sequence[str]) -> str:
    if len(docs) == 1:
        doc = docs[0]
        model = doc.get("model") or {}
        shape = "×".join(str(v) for v in model.get("shape") or [])
        return f"diffcrit analyze — {model.get('id', '?')} ({shape}) — {_tc_text(doc)}"
    sep = ";  " if len(docs) <= 2 else "\n"
    return "diffcrit analyze — " + sep.join(f"{label}: {_tc_text(doc)}" for label, doc in zip(labels, docs))


def _tc_text(doc: Mapping[str, Any], short: bool = False) -> str:
    critical = doc.get("critical") or {}
    if not (critical.get("found") and _is_number(critical.get("t"))):
        return "no critical point"
    text = f"t_c = {critical['t']:.2f}"
    if _valid_ci(critical.get("ci95")):
        text += f" [{critical['ci95'][0]:.2f}, {critical['ci95'][1]:.2f}]"
    if short:
        return text
    if _is_number(critical.get("sigma")):
        text += f", σ = {critical['sigma']:.2f}"
    if isinstance(critical.get("step"), int):
        text += f", step {critical['step']}/{len(doc.get('steps') or [])}"
    return text


# --------------------------------------------------------------------------------------------
# Guide results


def _draw_guide(fig: Figure, docs: Sequence[Mapping[str, Any]], labels: Sequence[str]) -> None:
    """Per metric: each arm's mean with 95% CI (left) and the paired differences (right)."""
    is_scored = [bool(doc.get("scored") and doc.get("metric_names")) for doc in docs]
    scored = [(doc, label) for doc, label, ok in zip(docs, labels, is_scored) if ok]
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
    for row, metric in enumerate(metrics):
        _guide_arms(axes[row, 0], scored, metric)
        _guide_comparisons(axes[row, 1], scored, metric)
    unscored = [label for label, ok in zip(labels, is_scored) if not ok]
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
    ax.set_xticks(range(len(arms)), labels=ticks)
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


def _comparison_text(c: Mapping[str, Any]) -> str:
    parts = []
    if _is_number(c.get("wilcoxon_p")):
        parts.append(f"p = {c['wilcoxon_p']:.2g}")
    if _is_number(c.get("effect_size")):
        parts.append(f"effect {c['effect_size']:.2f}")
    return ", ".join(parts)


def _guide_title(docs: Sequence[Mapping[str, Any]], labels: Sequence[str]) -> str:
    parts = []
    for doc, label in zip(docs, labels):
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
    """sigma = sqrt(exp(t) - 1) (DESIGN.md §2), vectorised; t < 0 maps to 0."""
    return np.sqrt(np.maximum(np.expm1(np.asarray(t, dtype=float)), 0.0))


def sigma_to_t(sigma):
    """t = log(1 + sigma^2) (DESIGN.md §2), vectorised."""
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
    return [name if names.count(name) == 1 else f"{name} #{i + 1}" for i, name in enumerate(names)]


def _doc_handles(labels: Sequence[str]) -> list[Line2D]:
    if len(labels) < 2:
        return []
    return [Line2D([], [], color="#333333", linestyle=DOC_STYLES[i % len(DOC_STYLES)], label=label)
            for i, label in enumerate(labels)]


def _dedup_legend(ax) -> None:
    handles, names = ax.get_legend_handles_labels()
    unique = dict(zip(names, handles))
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
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=11, color="#555555")


def _valid_ci(ci: Any) -> bool:
    return isinstance(ci, (list, tuple)) and len(ci) == 2 and all(_is_number(v) for v in ci)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _nan(value: Any) -> float:
    return float(value) if _is_number(value) else math.nan
