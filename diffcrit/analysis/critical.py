"""The critical block (docs/design.md §6): the transition verdict of every shell against its Gaussian null
(transition.py), every marker on the consistent steps with its bootstrap ci95, presence and modes, the brackets
of probe-based markers, and the regime's primary marker, at the shell with the strongest evidence."""

from __future__ import annotations

import numpy as np

from ..config import AnalyzeConfig
from ..frame import t_to_sigma
from ..sampling.steppers import StepInfo
from . import detection, estimators, transition
from .curves import Curves, consistent_steps, decision_shell
from .records import Records


def null_earlier(curves: Curves, records: Records, t: np.ndarray) -> np.ndarray:
    """(S, K) the Gaussian null f_G at t - delta (transition.allowed_shift): as far ahead as the sampler's error
    allows."""
    sigma = np.sqrt(np.expm1(np.clip(t - transition.allowed_shift(t), 0.0, None)))
    return estimators.gaussian_decided(curves.bins_final, records.bins.shell.numpy(), sigma, curves.decided.shape[1])


def transition_entries(records: Records, curves: Curves, resamples: list[Curves], keep: np.ndarray) -> list[dict]:
    """The ``transition`` list (docs/design.md §6a): each shell's excess over its Gaussian null, its bootstrap
    ci95 over the same resamples as every curve, and the verdict. ``keep``: the consistent steps, once per t."""
    t = np.array([info.t for info in records.infos])

    def nulls(c: Curves) -> tuple[np.ndarray, np.ndarray]:
        """(S, K) the null at each step and as far ahead as the sampler's error allows, once per curve set."""
        if c.null_decided is not None:  # the null through the model's own sampler: no allowance needed
            return c.null_decided, c.null_decided
        return c.gaussian_decided, null_earlier(c, records, t)

    sets = [(c, *nulls(c)) for c in (curves, *resamples)]

    def value(shell: int, c: Curves, now: np.ndarray, earlier: np.ndarray) -> float | None:
        return transition.excess_over_null(t, c.decided[:, shell], now[:, shell], earlier[:, shell], keep)

    null = transition.SAMPLED_NULL if curves.null_decided is not None else transition.FORMULA_NULL
    return [{**transition.verdict(value(n, *sets[0]), [value(n, *one) for one in sets[1:]], n), "null": null}
            for n in range(curves.decided.shape[1])]


def critical_shell(curves: Curves, records: Records, requested: int | None, entries: list[dict]) -> int | None:
    """The shell of ``decision`` and ``instability_onset``: ``requested`` if given, else the shell with the
    strongest evidence of a transition, else the default rule of ``decision_shell`` (a crossover's shell)."""
    strongest = transition.strongest(entries)
    if requested is None and strongest is not None:
        return strongest["shell"]
    return decision_shell(curves, records.bins, requested)


def provisional_shell(records: Records, curves: Curves, config: AnalyzeConfig) -> int | None:
    """``critical_shell`` judged on the point estimates (no bootstrap yet: each ci95 is the value itself), for the
    probe schedule's refinement while the run's records are still being completed."""
    t = np.array([info.t for info in records.infos])
    keep = consistent_steps(curves, records.coef_final.shape[0]) & once_per_t(t)
    return critical_shell(curves, records, config.decision_shell,
                          transition_entries(records, curves, [curves, curves], keep))


def decision_steps(records: Records, curves: Curves, config: AnalyzeConfig) -> set[int]:
    """The two steps around the ``decision`` marker, as critical_block finds it (none when it is absent):
    known from the records alone, before any refinement."""
    t = np.array([info.t for info in records.infos])
    keep = consistent_steps(curves, records.coef_final.shape[0]) & once_per_t(t)
    value = markers_of(curves, t, keep, provisional_shell(records, curves, config))[detection.DECISION]
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
    entries = transition_entries(records, curves, resamples, keep)
    shell = critical_shell(curves, records, config.decision_shell, entries)
    markers = markers_of(curves, t, keep, shell)
    draws = [markers_of(c, t, keep, shell) for c in resamples]
    detected = _detected_curves(curves, keep, shell)
    # a probe-based marker is known to lie between two probed steps: its interval holds that bracket too
    brackets = detection.find_brackets(t, detected["s_low"], detected["xi_eq"], detected["unstable"], markers)
    blocks: dict[str, dict | None] = {}
    for name, value in markers.items():
        summary = detection.summarize_bootstrap([d[name] for d in draws]) if draws else \
            {"presence": None, "ci95": None, "modes": None}
        if name == detection.DECISION and value is not None:  # the sampler's discretisation error (transition.py)
            delta = float(np.interp(-value, -t, transition.allowed_shift(t)))
            summary["ci95"] = _widen(summary.get("ci95"), (value - delta, value + delta))
        blocks[name] = marker_block(value, summary, records.infos, brackets.get(name))
    primary = detection.PRIMARY[config.linearize_at]
    verdict = {**_verdict(entries, shell), "supporting": _supporting(blocks)}
    chosen = blocks[primary]
    if config.linearize_at == "trajectory" and not verdict["evidence"]:
        chosen = None  # a crossover, not a transition: the decision time stays in markers.decision
    located = chosen if chosen is not None else {**_locate(None, records.infos, t), "ci95": None, "presence": None}
    return {"found": chosen is not None, **{key: located.get(key) for key in
                                            ("t", "sigma", "step", "timestep", "fraction", "ci95", "presence")},
            "modes": located.get("modes"), "primary": primary, "regime": config.linearize_at,
            "decision_shell": shell, "transition": verdict, "transition_by_shell": entries, "markers": blocks,
            "bootstrap": {"repeats": len(resamples), "over": "samples and probe points"}}


# The markers that support a transition where they are resolved (docs/design.md §6a): trajectories turning unstable
# and a growth of the correlation length; each with whether its ci95 meets the decision marker's.
SUPPORTING = (detection.INSTABILITY_ONSET, detection.XI_GROWTH)


def _supporting(blocks: dict[str, dict | None]) -> dict:
    decision = blocks.get(detection.DECISION)

    def meets(block: dict | None) -> bool | None:
        if block is None or decision is None or not block.get("ci95") or not decision.get("ci95"):
            return None
        return block["ci95"][0] <= decision["ci95"][1] and decision["ci95"][0] <= block["ci95"][1]

    return {name: {"t": None if blocks.get(name) is None else blocks[name]["t"],
                   "meets_decision": meets(blocks.get(name))} for name in SUPPORTING}


def _verdict(entries: list[dict], shell: int | None) -> dict:
    """critical.transition: the decision shell's verdict; ``shell`` is null unless it shows evidence."""
    entry = entries[shell] if shell is not None else {**transition.verdict(None, [], -1)}
    return {**entry, "shell": shell if entry["evidence"] else None}


def marker_block(t_value: float | None, summary: dict, infos: list[StepInfo],
                 bracket: tuple[float, float] | None = None) -> dict | None:
    """One entry of critical.markers: where ``t_value`` lies on the step grid (t, sigma, step, timestep, fraction)
    with its bootstrap ``summary`` (ci95, presence, modes), the ci95 widened to hold ``bracket`` (the two measured
    points the marker lies between); None when the marker was not found."""
    if t_value is None:
        return None
    if bracket is not None:
        summary = {**summary, "ci95": _widen(summary.get("ci95"), bracket)}
    return {**_locate(t_value, infos, np.array([info.t for info in infos])), **summary}


def _locate(t_value: float | None, infos: list[StepInfo], t: np.ndarray) -> dict:
    if t_value is None:
        return {"t": None, "sigma": None, "step": None, "timestep": None, "fraction": None}
    step, fraction = detection.locate(t_value, t)
    return {"t": t_value, "sigma": t_to_sigma(t_value), "step": infos[step].index,
            "timestep": infos[step].timestep, "fraction": fraction}
