"""Synthetic, schema-valid result documents for the check and plot tests.

``make_analyze_result`` builds an analyze result (docs/design.md §9) whose lowest-shell stiffness is a
Gaussian dip centred on a chosen t_c (docs/design.md §3, §5):

    s_n(t)     = 1 - A_n exp(-(t - t_c)^2 / (2 w^2)),   A_n = depth * exp(-0.35 n^2)
    xi_eq(t)   = 1 + 4 exp(-(t - t_c)^2 / (2 w^2))                 peaks at t_c
    xi_D(t)    = 0.5 + 3 / (1 + exp((t - t_c) / 0.3))              grows fastest at t_c

    decided_n(t) = 1 / (1 + exp((t - t_c) / 0.3))                  crosses 1/2 at t_c

so the markers decision (the primary marker along trajectories), stiffness_min, xi_eq_peak and
xi_growth sit at t_c, stiffness_zero sits where s_0 first crosses 0 in generation order, and
critical.t is exactly t_c.
``make_guide_result`` follows the guide contract (diffcrit/report/schema/guide.schema.json).
"""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np

from diffcrit.analysis.detection import MARKERS as MARKER_NAMES  # noqa: F401  (re-exported for the plot tests)
from diffcrit.report.document import SCHEMA_VERSION
from diffcrit.guidance.alignment import TESTS


def make_analyze_result(
    t_c: float = 1.5,
    *,
    steps: int = 40,
    shells: int = 4,
    shape: tuple[int, int, int] = (3, 16, 16),
    t_max: float = 6.0,
    t_min: float = 0.02,
    width: float = 0.6,
    depth: float = 1.3,
    ci_halfwidth: float | None = 0.08,
    noise: float = 0.0,
    seed: int = 0,
    probe_every: int = 1,
    model_id: str = "builtin:synthetic",
) -> dict[str, Any]:
    """An analyze result with a controllable critical time ``t_c`` (in OU time t)."""
    rng = np.random.default_rng(seed)
    t = np.linspace(t_max, t_min, steps)  # generation order: t decreasing
    sigma = np.sqrt(np.expm1(t))
    bump = np.exp(-((t - t_c) ** 2) / (2 * width**2))
    n = np.arange(shells)
    stiffness = 1 - depth * np.exp(-0.35 * n[None, :] ** 2) * bump[:, None]
    stiffness = stiffness + noise * rng.standard_normal(stiffness.shape)
    xi_eq = 1 + 4 * bump
    xi_denoised = 0.5 + 3 / (1 + np.exp((t - t_c) / 0.3))
    xi_state = 0.3 + 0.5 * xi_denoised
    decided = 1 / (1 + np.exp((t - t_c) / 0.3))
    unstable = np.clip(-(stiffness - 1e-3), 0, None) > 0

    step_records = []
    for i in range(steps):
        probed = i % probe_every == 0
        step_records.append({
            "index": i,
            "timestep": float(round(999 * (1 - i / (steps - 1)))),
            "sigma": float(sigma[i]),
            "t": float(t[i]),
            "xi_state": float(xi_state[i]),
            "xi_denoised": float(xi_denoised[i]),
            "stiffness": [float(v) for v in stiffness[i]] if probed else None,
            "stiffness_sem": [0.01] * shells if probed else None,
            "r": float((stiffness[i, 0]) / sigma[i] ** 2) if probed else None,
            "kappa": 0.5 if probed else None,
            "xi_eq": float(xi_eq[i]) if probed else None,
            "decided": [float(decided[i])] * shells,
            "decided_ci95": [[float(decided[i]) - 0.02, float(decided[i]) + 0.02]] * shells,
            "gaussian_stiffness": [float(sigma[i] ** 2 / (1 + sigma[i] ** 2))] * shells,
            "unstable_fraction": [float(u) for u in unstable[i]] if probed else None,
            "x0_consistent": True,
        })

    # stiffness_zero: first crossing below zero in generation order (t decreasing), docs/design.md §6
    t_zero = t_c + width * math.sqrt(2 * math.log(depth)) if depth > 1 else None
    marker_ts = {"decision": t_c, "instability_onset": t_zero, "stiffness_zero": t_zero, "stiffness_min": t_c,
                 "xi_eq_peak": t_c, "xi_growth": t_c}
    ci = (lambda v: [v - ci_halfwidth, v + ci_halfwidth]) if ci_halfwidth is not None else (lambda v: None)
    markers = {name: ({**_at(t_m, t, sigma, steps), "ci95": ci(t_m), "presence": 1.0} if t_m is not None else None)
               for name, t_m in marker_ts.items()}
    critical = {"found": True, **_at(t_c, t, sigma, steps), "ci95": ci(t_c), "presence": 1.0,
                "primary": "decision", "regime": "trajectory", "decision_shell": 0, "markers": markers}

    side = shape[-1]
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": "analyze",
        "diffcrit_version": "0.1.0",
        "created": "2026-01-01T00:00:00Z",
        "model": {"id": model_id, "kind": "builtin", "class": None, "scheduler": None,
                  "prediction_type": "sample", "shape": list(shape), "conditioning": None},
        "config": {"steps": steps, "samples": 16, "seed": seed, "shells": shells, "directions": 4,
                   "probe_samples": 2, "probe": "jvp", "linearize_at": "trajectory",
                   "probe_every": probe_every},
        "environment": {"python": "3.11", "torch": "2.4", "device": "cpu", "probe_method": "jvp"},
        "time_convention": {"t": "log(1 + sigma^2)"},
        "shells": [2 * math.pi * k / side for k in range(shells)],
        "steps": step_records,
        "critical": critical,
        "diagnostics": {"total_variance": {"limit": 1.25, "max_decided": [1.0] * shells, "inconsistent_steps": []},
                        "tweedie": {"median_ratio": [1.0] * shells}, "xi": {"undefined_steps_denoised": 0}},
        "timing": {"total_s": 1.0},
    }


def _at(t_m: float, t: np.ndarray, sigma: np.ndarray, steps: int) -> dict[str, Any]:
    """Locate OU time ``t_m`` on the step grid: t, sigma, nearest step, timestep, fraction."""
    step = int(np.argmin(np.abs(t - t_m)))
    return {"t": float(t_m), "sigma": math.sqrt(math.expm1(t_m)), "step": step,
            "timestep": float(round(999 * (1 - step / (steps - 1)))), "fraction": step / (steps - 1)}


def shifted(doc: dict[str, Any], dt: float) -> dict[str, Any]:
    """A copy of ``doc`` regenerated with its critical time moved by ``dt`` (a regression)."""
    cfg = doc["config"]
    return make_analyze_result(doc["critical"]["t"] + dt, steps=cfg["steps"], shells=cfg["shells"],
                               shape=tuple(doc["model"]["shape"]), seed=cfg["seed"])


def make_guide_result(*, scored: bool = True, shift: float = 0.0) -> dict[str, Any]:
    """A guide result (the guide schema's contract); ``shift`` raises the critical arm's metrics."""
    metric_names = ["target_prob", "top1"] if scored else []
    base = {"critical": (0.62 + shift, 0.71 + shift), "random": (0.48, 0.55), "none": (0.31, 0.35)}
    arms = []
    for name, (prob, top1) in base.items():
        metrics = {"target_prob": {"mean": prob, "ci95": [prob - 0.05, prob + 0.05]},
                   "top1": {"mean": top1, "ci95": [top1 - 0.07, top1 + 0.07]}} if scored else {}
        arms.append({"name": name, "n": 64, "metrics": metrics})
    comparisons = []
    if scored:
        for versus in ("random", "none"):
            for metric, idx in (("target_prob", 0), ("top1", 1)):
                diff = base["critical"][idx] - base[versus][idx]
                comparisons.append({"arm": "critical", "versus": versus, "metric": metric,
                                    "diff_mean": diff, "ci95": [diff - 0.04, diff + 0.04],
                                    "p_value": 0.003, "test": TESTS[metric], "effect_size": 0.8})
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": "guide",
        "diffcrit_version": "0.1.0",
        "created": "2026-01-01T00:00:00Z",
        "model": {"id": "builtin:synthetic-classes", "kind": "builtin", "shape": [1, 8, 8]},
        "config": {"samples": 64, "seed": 0},
        "environment": {"python": "3.11", "torch": "2.4", "device": "cpu"},
        "critical": {"t": 1.4, "ci95": [1.3, 1.5], "source": "analyze"},
        "window_width_t": 0.5,
        "scored": scored,
        "metric_names": metric_names,
        "arms": arms,
        "comparisons": comparisons,
        "timing": {"total_s": 1.0},
    }


def with_changes(doc: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """A deep copy of ``doc`` with top-level keys replaced."""
    out = copy.deepcopy(doc)
    out.update(changes)
    return out
