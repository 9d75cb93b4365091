"""The figure of guide results (docs/design.md §11): per metric, each arm's mean with its 95% CI (left) and the
paired differences, or a sweep's profile over t (right). Results are read through ``report.view.GuideView``."""

from __future__ import annotations

from typing import Sequence

from matplotlib.figure import Figure

from .drawing import ci_err, dedup_legend, no_data, offsets
from .view import Comparison, GuideView

SHAPES = "os^D"  # one point shape per overlaid result


def draw_guide(fig: Figure, views: Sequence[GuideView], labels: Sequence[str]) -> None:
    """Per metric: each arm's mean with 95% CI (left) and the paired differences (right)."""
    scored = [(v, label) for v, label in zip(views, labels, strict=True) if v.scored]
    fig.suptitle(_guide_title(views, labels), fontsize=13)
    if not scored:
        ax = fig.add_subplot()
        ax.set_axis_off()
        ax.text(0.5, 0.55, "not scored: no classifier metrics in this guide result", ha="center", va="center",
                fontsize=18, transform=ax.transAxes)
        ax.text(0.5, 0.42, "guide ran with scored = false (no classifier); re-run it with one to compare arms",
                ha="center", va="center", fontsize=11, color="#555555", transform=ax.transAxes)
        arms = ", ".join(f"{arm.name} (n = {arm.n})" for v in views for arm in v.arms)
        if arms:
            ax.text(0.5, 0.34, f"arms: {arms}", ha="center", va="center", fontsize=11, color="#555555",
                    transform=ax.transAxes)
        return
    metrics = list(dict.fromkeys(m for v, _ in scored for m in v.metric_names))
    axes = fig.subplots(len(metrics), 2, squeeze=False)
    swept = [(v, label) for v, label in scored if v.sweep is not None]
    for row, metric in enumerate(metrics):
        _guide_arms(axes[row, 0], scored, metric)
        if swept:  # a sweep has no treatment to compare: its profile over t instead
            _guide_profile(axes[row, 1], swept, metric)
        else:
            _guide_comparisons(axes[row, 1], scored, metric)
    unscored = [label for v, label in zip(views, labels, strict=True) if not v.scored]
    if unscored:
        fig.text(0.5, 0.005, f"not scored (left out): {', '.join(unscored)}", ha="center", fontsize=9)


def _guide_arms(ax, scored: Sequence[tuple[GuideView, str]], metric: str) -> None:
    arms = list(dict.fromkeys(arm.name for v, _ in scored for arm in v.arms))
    shifts = offsets(len(scored))
    for i, (v, label) in enumerate(scored):
        for x, name in enumerate(arms):
            arm = v.arm(name)
            stat = arm.metrics.get(metric) if arm else None
            if stat is None or stat.mean is None:
                continue
            ax.errorbar([x + shifts[i]], [stat.mean], yerr=ci_err(stat.mean, stat.ci95), fmt=SHAPES[i % 4],
                        capsize=5, color=f"C{i}", markersize=7, label=label)
    ticks = []
    for name in arms:
        ns = [arm.n for v, _ in scored for arm in v.arms if arm.name == name]
        ticks.append(f"{name}\n(n = {ns[0]})" if ns and ns[0] is not None else name)
    crowded = len(arms) > 6  # a sweep: one arm per block
    ax.set_xticks(range(len(arms)), labels=ticks, rotation=60 if crowded else 0, ha="right" if crowded else "center",
                  fontsize=8 if crowded else None)
    ax.set_xlim(-0.6, len(arms) - 0.4)
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} per arm (mean, 95% CI)", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    if len(scored) > 1:
        dedup_legend(ax)


def _guide_comparisons(ax, scored: Sequence[tuple[GuideView, str]], metric: str) -> None:
    pairs = list(dict.fromkeys(c.pair for v, _ in scored for c in v.comparisons if c.metric == metric))
    if not pairs:
        no_data(ax, f"no paired comparisons for {metric}")
        return
    shifts = offsets(len(scored))
    ax.axvline(0.0, color="black", linewidth=0.8)
    for i, (v, label) in enumerate(scored):
        for c in v.comparisons:
            if c.metric != metric or c.diff_mean is None:
                continue
            y = len(pairs) - 1 - pairs.index(c.pair) + shifts[i]
            ax.errorbar([c.diff_mean], [y], xerr=ci_err(c.diff_mean, c.ci95), fmt=SHAPES[i % 4], capsize=5,
                        color=f"C{i}", markersize=7, label=label)
            ax.annotate(_comparison_text(c), (c.diff_mean, y), textcoords="offset points", xytext=(8, 6), fontsize=8)
    ax.set_yticks(range(len(pairs)), labels=pairs[::-1])
    ax.set_ylim(-0.6, len(pairs) - 0.4)
    ax.margins(x=0.2)
    ax.set_xlabel(f"paired difference in {metric}")
    ax.set_title(f"paired differences in {metric} (mean, 95% CI)", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    if len(scored) > 1:
        dedup_legend(ax)


def _guide_profile(ax, swept: Sequence[tuple[GuideView, str]], metric: str) -> None:
    """guide --sweep: each block's mean (95% CI) at its mean t, the none/all arms as lines, the decision time t_c
    (with its ci95) and the profile's peak (with its bootstrap ci95) marked."""
    drawn = False
    for i, (v, label) in enumerate(swept):
        sweep, color = v.sweep, f"C{i}"
        points = [(block.t_center, block.metrics[metric]) for block in sweep.profile
                  if metric in block.metrics and block.metrics[metric].mean is not None]
        if not points:
            continue
        drawn = True
        ts, stats = [t for t, _ in points], [stat for _, stat in points]
        means = [stat.mean for stat in stats]
        errs = [ci_err(stat.mean, stat.ci95) for stat in stats]
        yerr = [[e[0][0] for e in errs], [e[1][0] for e in errs]] if all(e is not None for e in errs) else None
        ax.errorbar(ts, means, yerr=yerr, fmt="o-", capsize=4, color=color,
                    label=f"{label}: blocks of {sweep.block_steps} steps, {sweep.base} base")
        for arm in v.arms:
            stat = arm.metrics.get(metric)
            if arm.name in ("none", "all") and stat is not None and stat.mean is not None:
                ax.axhline(stat.mean, color=color, linestyle=":" if arm.name == "none" else "--", linewidth=1)
                ax.annotate(arm.name, (1.0, stat.mean), xycoords=("axes fraction", "data"), fontsize=8,
                            ha="right", va="bottom", color=color)
        if v.critical is not None:
            ax.axvline(v.critical.t, color=color, linewidth=1.2, alpha=0.8, label=f"t_c = {v.critical.t:.2f}")
            if v.critical.ci95 is not None:
                ax.axvspan(*v.critical.ci95, color=color, alpha=0.12)
        peak = sweep.peak
        if peak is not None and peak.metric == metric and peak.t is not None:
            stat = next(s for t, s in points if t == peak.t) if peak.t in ts else None
            y = stat.mean if stat else max(means)
            ax.errorbar([peak.t], [y], xerr=ci_err(peak.t, peak.ci95), fmt="*", markersize=14, color=color,
                        capsize=5, label=f"peak t = {peak.t:.2f}")
    if not drawn:
        no_data(ax, f"no sweep profile for {metric}")
        return
    ax.set_xlabel("t = log(1 + σ²), mean over the block's steps")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} per block of steps (mean, 95% CI)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def _comparison_text(c: Comparison) -> str:
    parts = []
    if c.p_value is not None:
        parts.append(f"p = {c.p_value:.2g}")
    if c.effect_size is not None:
        parts.append(f"effect {c.effect_size:.2f}")
    return ", ".join(parts)


def _guide_title(views: Sequence[GuideView], labels: Sequence[str]) -> str:
    parts = []
    for v, label in zip(views, labels, strict=True):
        critical = v.critical
        text = f"{label}: t_c = {critical.t:.2f}" if critical is not None else f"{label}: t_c ?"
        if critical is not None and critical.ci95 is not None:
            text += f" [{critical.ci95[0]:.2f}, {critical.ci95[1]:.2f}]"
        if v.window_width_t is not None:
            text += f", window Δt = {v.window_width_t:.2f}"
        parts.append(text)
    return "diffcrit guide — " + ";  ".join(parts)
