"""The critical block (docs/design.md §6): every marker on the consistent steps with its bootstrap ci95,
presence and modes, the brackets of probe-based markers, and the regime's primary marker."""

from __future__ import annotations

import numpy as np

from ..config import AnalyzeConfig
from ..frame import t_to_sigma
from ..sampling.steppers import StepInfo
from . import detection
from .curves import Curves, consistent_steps, decision_shell
from .records import Records


def decision_steps(records: Records, curves: Curves, config: AnalyzeConfig) -> set[int]:
    """The two steps around the ``decision`` marker, as critical_block finds it (none when it is absent):
    known from the records alone, before any refinement."""
    t = np.array([info.t for info in records.infos])
    keep = consistent_steps(curves, records.coef_final.shape[0]) & once_per_t(t)
    value = markers_of(curves, t, keep, decision_shell(curves, records.bins, config.decision_shell))[detection.DECISION]
    if value is None:
        return set()
    before = int(np.flatnonzero(t >= value)[-1])  # t falls along generation
    return {before, min(before + 1, len(t) - 1)}


def _detected_curves(curves: Curves, keep: np.ndarray, shell: int | None) -> dict[str, np.ndarray | None]:
    """The curves detection reads, on the steps in ``keep`` (the others NaN); decided and unstable at ``shell``."""
    mask = lambda v: on_steps(v, keep)  # noqa: E731
    pick = lambda v: None if shell is None else mask(v)[:, shell]  # noqa: E731
    return {"s_low": mask(curves.stiffness)[:, 0], "xi_eq": mask(curves.xi_eq), "xi_denoised": mask(curves.xi_denoised),
            "decided": pick(curves.decided), "unstable": pick(curves.unstable)}


def markers_of(curves: Curves, t: np.ndarray, keep: np.ndarray, shell: int | None) -> dict[str, float | None]:
    """Every marker on the steps in ``keep`` (the others are NaN for detection)."""
    return detection.find_markers(t, **_detected_curves(curves, keep, shell))


# Relative difference in t below which two consecutive records are at one sigma: float32 round-off of a
# scheduler's sigma tables (KDPM2 ancestral's interpolated sigma is the next grid sigma up to ~4e-5 in t;
# distinct steps are > 2e-3 apart even at 500 steps).
SAME_T_RTOL = 1e-4


def once_per_t(t: np.ndarray) -> np.ndarray:
    """(S,) bool: False on a step whose t the next step repeats (within SAME_T_RTOL). Heun-type schedulers take
    the second evaluation of a step and the first of the next at one sigma (KDPM2 ancestral too:
    sqrt(sigma_k sigma_down_k) = sigma_{k+1}); markers read each t once, from the later."""
    return np.append(~np.isclose(t[:-1], t[1:], rtol=SAME_T_RTOL, atol=0), True)


def on_steps(values: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """A per-step curve (S, ...) with NaN on the steps not in ``keep`` (S,)."""
    return np.where(keep.reshape(-1, *([1] * (values.ndim - 1))), values, np.nan)


def _widen(ci95: list[float] | None, bracket: tuple[float, float]) -> list[float]:
    low, high = min(bracket), max(bracket)
    return [low, high] if ci95 is None else [min(ci95[0], low), max(ci95[1], high)]


def critical_block(records: Records, config: AnalyzeConfig, curves: Curves, resamples: list[Curves],
                   keep: np.ndarray) -> dict:
    """docs/design.md §6: every marker with its own bootstrap ci95, presence and modes; critical.t is the
    regime's primary marker (``detection.PRIMARY``), never a median of markers. ``keep``: the consistent steps."""
    t = np.array([info.t for info in records.infos])
    keep = keep & once_per_t(t)
    shell = decision_shell(curves, records.bins, config.decision_shell)
    markers = markers_of(curves, t, keep, shell)
    draws = [markers_of(c, t, keep, shell) for c in resamples]
    detected = _detected_curves(curves, keep, shell)
    # a probe-based marker is known to lie between two probed steps: its interval holds that bracket too
    brackets = detection.find_brackets(t, detected["s_low"], detected["xi_eq"], detected["unstable"], markers)
    blocks: dict[str, dict | None] = {}
    for name, value in markers.items():
        summary = detection.summarize_bootstrap([d[name] for d in draws]) if draws else \
            {"presence": None, "ci95": None, "modes": None}
        if name in brackets:
            summary["ci95"] = _widen(summary.get("ci95"), brackets[name])
        blocks[name] = None if value is None else {**_locate(value, records.infos, t), **summary}
    primary = detection.PRIMARY[config.linearize_at]
    chosen = blocks[primary]
    located = chosen if chosen is not None else {**_locate(None, records.infos, t), "ci95": None, "presence": None}
    return {"found": chosen is not None, **{key: located.get(key) for key in
                                            ("t", "sigma", "step", "timestep", "fraction", "ci95", "presence")},
            "modes": located.get("modes"), "primary": primary, "regime": config.linearize_at,
            "decision_shell": shell, "markers": blocks,
            "bootstrap": {"repeats": len(resamples), "over": "samples and probe points"}}


def _locate(t_value: float | None, infos: list[StepInfo], t: np.ndarray) -> dict:
    if t_value is None:
        return {"t": None, "sigma": None, "step": None, "timestep": None, "fraction": None}
    step, fraction = detection.locate(t_value, t)
    return {"t": t_value, "sigma": t_to_sigma(t_value), "step": infos[step].index,
            "timestep": infos[step].timestep, "fraction": fraction}
