"""Release gating: compare a candidate analyze result with a baseline (``diffcrit check``).

Everything here is pure: result documents (the dicts of docs/design.md §9) and a ``Tolerances`` in,
a list of ``CheckOutcome`` out. Bad input raises ``UserError``; nothing prints or exits.

The checks, in report order (docs/design.md §8):
    critical.found          both results evidence a transition (or find their primary marker), or both do not
    critical.t              |Δ t_c| within the tolerance of the pairing, or the combined 95% CIs; where a side
                            evidences no transition, the decision times (critical.markers.decision) are compared
    marker.<name>           |Δ t| of each marker (docs/design.md §6), same rule as critical.t
    decided.shell<n>        max over t of |Δ f_n(t)|, the decided fraction, against the pointwise CIs
    stiffness.shell<n>      RMS of Δ s/(1+|s|) on a common t grid: bounded, so s ≈ -4e6 at y = 0 and
                            tiny sigma counts as much as s = -1, not a million times more
    xi.state, xi.denoised   RMS |Δ log xi(t)| where both are defined (docs/design.md §4)
    xi.eq                   RMS |Δ log xi_eq(t)| where both are defined (docs/design.md §3)

Two results are *paired* when they used the same sample range (seed and samples) and steps: common
random numbers, so only the model differs, and the paired tolerances are tight. Otherwise they are
*independent* (disjoint ranges; overlapping ones are noted) and a difference must also exceed the
sampling noise both CIs show. The default tolerances are calibrated on a null distribution of
disjoint reseeds of the trained built-ins (docs/measurements.md "Release gate calibration",
``bench/calibrate_check.py``).

Curves are compared in OU time t = log(1 + sigma^2) (docs/design.md §2) on a uniform grid over the
t range both results cover, so results with different step counts or schedulers compare.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from ..config_file import check_mapping, read_section, validator_class
from ..errors import UserError
from ..report.document import KIND_ANALYZE, read_document, validate_document
from ..report.view import SOURCE_DECISION, AnalyzeView, Critical, Marker, WorkingTime, marker_order

# Check names (stable: they are JUnit test names and keys in `--json` output).
CHECK_CRITICAL_FOUND = "critical.found"
CHECK_CRITICAL_T = "critical.t"
CHECK_MARKER_PREFIX = "marker."
CHECK_DECIDED_PREFIX = "decided.shell"
CHECK_STIFFNESS_PREFIX = "stiffness.shell"
CHECK_XI_STATE = "xi.state"
CHECK_XI_DENOISED = "xi.denoised"
CHECK_XI_EQ = "xi.eq"

STATUS_PASS, STATUS_FAIL, STATUS_SKIP = "pass", "fail", "skip"

# Keys of one outcome in `--json` output and of the whole document.
KEY_NAME, KEY_STATUS, KEY_MEASURED, KEY_TOLERANCE, KEY_UNIT, KEY_DETAIL = (
    "name", "status", "measured", "tolerance", "unit", "detail")
KEY_PASSED, KEY_CHECKS, KEY_TOLERANCES, KEY_NOTES = "passed", "checks", "tolerances", "notes"

PAIRED, INDEPENDENT = "paired", "independent"

# Correlation lengths below this (pixels) are compared as equal to it: log-ratios of near-zero
# lengths are noise, not signal.
XI_FLOOR_PX = 0.1

# The `check` section of diffcrit.yaml holds the tolerances.
CONFIG_SECTION = "check"


@dataclass(frozen=True)
class Tolerances:
    """How far a candidate may drift from the baseline. ``None`` turns a check off.

    Defaults and why (t is OU time, docs/design.md §2). Independent comparisons were calibrated on
    disjoint reseeds of the trained built-ins at the analyze defaults (128 samples; docs/measurements.md
    "Release gate calibration"):
    critical.t, xi are 1.2-1.5x the largest difference seen between two reseeds of the same model
    (critical.t: 0.35 on digits, 0.18 on textures), decided and stiffness about 2x (kept from the
    64-sample calibration, whose nulls were 0.20 and 0.035).
      critical_t = 0.5       independent: |Δ t_c| allowed, or ci_scale × the combined 95% CI
      ci_scale = 1.0         half-width sqrt(h_cand² + h_base²) where that is wider.
      paired_critical_t      paired (same sample range): the same seeds remove the sampling noise;
        = 0.05               what is left is probe round-off and the model change itself.
      markers = null         each secondary marker, same rule; off by default: over disjoint reseeds of
                             the mixture (16 probe points) stiffness_min and xi_eq_peak moved by 0.74 in t
                             while the primary moved by 0.01 (bench/calibrate_check.py). Set a number to gate them.
      marker_presence        a marker found (presence >= 0.95) in one result but absent from the other fails.
      decided = 0.25         max |Δ f_n(t)| of the decided fraction from the decision shell up, independent
                             (largest null: 0.12 digits, 0.11 textures): allowed pointwise is
                             max(decided, ci_scale × combined CI half-width at t); f is in [0, ~1].
      paired_decided = 0.03  the same, paired.
      stiffness = 0.06       RMS of Δ s/(1+|s|) per shell (bounded in (-1, 1)).
      stiffness_shells = 3   the lowest shells carry the transition.
      xi = 0.6               RMS of log(xi_cand / xi_base) of xi(D(y)), where both are defined
                             (largest null: 0.49 digits, from the first steps, where D(y) barely varies).
      xi_state = null        the same for xi(y): y is mostly noise until late, its xi is undefined or
                             erratic there (RMS up to 0.81 between reseeds of textures): off by default.
      xi_eq = null           xi_eq = sqrt(c/|s0|) diverges where s0 crosses 0: off by default.
      grid_points = 64       the common t grid: finer than the default 50 steps.
    """

    critical_t: float | None = 0.5
    ci_scale: float = 1.0
    paired_critical_t: float | None = 0.05
    markers: float | None = None
    marker_presence: bool = True
    decided: float | None = 0.25
    paired_decided: float | None = 0.03
    stiffness: float | None = 0.06
    stiffness_shells: int = 3
    xi: float | None = 0.6
    xi_state: float | None = None
    xi_eq: float | None = None
    grid_points: int = field(default=64, metadata={"minimum": 2})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

# A marker counts as reliably found when this share of the bootstrap resamples has it.
MARKER_PRESENT = 0.95


@dataclass(frozen=True)
class CheckOutcome:
    """One row of the check table. ``measured`` is the difference, in ``unit``; the check fails
    when |measured| > ``tolerance``. A skipped check has nothing to compare on either side."""

    name: str
    status: str
    measured: float | None
    tolerance: float | None
    unit: str
    detail: str

    @property
    def failed(self) -> bool:
        return self.status == STATUS_FAIL

    def to_dict(self) -> dict[str, Any]:
        return {KEY_NAME: self.name, KEY_STATUS: self.status, KEY_MEASURED: _finite_or_none(self.measured),
                KEY_TOLERANCE: _finite_or_none(self.tolerance), KEY_UNIT: self.unit, KEY_DETAIL: self.detail}


def marker_check_name(marker: str) -> str:
    return f"{CHECK_MARKER_PREFIX}{marker}"


def stiffness_check_name(shell: int) -> str:
    return f"{CHECK_STIFFNESS_PREFIX}{shell}"


# --------------------------------------------------------------------------------------------
# Tolerances: YAML reading and validation (separate, so a dict from anywhere validates the same)


def tolerances_schema() -> dict[str, Any]:
    """The JSON Schema of the ``check:`` section, read off ``Tolerances``' fields: a ``float`` field takes a number
    >= 0, an ``int`` one an integer >= 1 (or its ``minimum``), a ``bool`` one true or false, one that may be ``None``
    also null (the check turned off); no other key."""
    hints = typing.get_type_hints(Tolerances)
    properties = {}
    for f in dataclasses.fields(Tolerances):
        base, optional = _field_type(hints[f.name])
        prop: dict[str, Any] = {"type": [_JSON_TYPES[base], "null"] if optional else _JSON_TYPES[base]}
        if base is not bool:
            prop["minimum"] = f.metadata.get("minimum", 1 if base is int else 0)
        properties[f.name] = prop
    return {"$schema": validator_class().META_SCHEMA["$schema"], "type": "object", "properties": properties,
            "additionalProperties": False}


def tolerances_from_mapping(data: Mapping[str, Any] | None, source: str = "tolerances") -> Tolerances:
    """Validate a mapping of tolerance overrides against ``tolerances_schema``; the first unknown key or wrong
    value is a one-line user error naming the key (``config_file.check_mapping``)."""
    if data is None:
        return Tolerances()
    if not isinstance(data, Mapping):
        raise UserError(f"{source}: expected a mapping of tolerances, got {type(data).__name__}")
    hints = typing.get_type_hints(Tolerances)
    values = check_mapping(data, tolerances_schema(), source)
    return Tolerances(**{key: None if value is None else _field_type(hints[key])[0](value)
                         for key, value in values.items()})


_JSON_TYPES = {float: "number", int: "integer", bool: "boolean"}


def _field_type(hint: Any) -> tuple[type, bool]:
    """``float | None`` -> (float, True); ``int`` -> (int, False)."""
    args = typing.get_args(hint)
    return (next(a for a in args if a is not type(None)), True) if type(None) in args else (hint, False)


def load_tolerances(path: Path | str | None) -> Tolerances:
    """Read the ``check:`` section of a diffcrit.yaml; ``None`` gives the documented defaults."""
    if path is None:
        return Tolerances()
    return tolerances_from_mapping(read_section(path, CONFIG_SECTION), f"{Path(path)}: {CONFIG_SECTION}")


# --------------------------------------------------------------------------------------------
# Compatibility (result files are read and validated by report.read_document)


def check_compatible(candidate: Mapping[str, Any], baseline: Mapping[str, Any]) -> None:
    """Raise ``UserError`` unless the two analyze results can be compared at all."""
    validate_document(candidate, KIND_ANALYZE, "candidate")
    validate_document(baseline, KIND_ANALYZE, "baseline")
    cand, base = AnalyzeView.from_document(candidate), AnalyzeView.from_document(baseline)
    check_same_shape(cand.model.shape, base.model.shape)
    common = min(len(cand.shells), len(base.shells))
    if not np.allclose(cand.shells[:common], base.shells[:common], rtol=1e-6, atol=1e-9):
        raise UserError("the results use different shell wave numbers (shells)",
                        "analyse the candidate with the baseline's config (as `diffcrit check` with `model` does)")


def check_same_shape(candidate: Iterable[int], baseline: Iterable[int]) -> None:
    """Raise ``UserError`` unless the candidate model samples in the baseline's (C, H, W)."""
    candidate, baseline = list(candidate), list(baseline)
    if candidate != baseline:
        raise UserError(f"different model shapes: candidate {candidate}, baseline {baseline}",
                        "compare checkpoints of the same architecture")


def config_differences(candidate: Mapping[str, Any], baseline: Mapping[str, Any]) -> list[str]:
    """Notes (not failures) on resolved config options that differ, e.g. ``steps: 100 vs 50``,
    and on the probe method used (``--probe auto`` resolves per model and version)."""
    cand, base = AnalyzeView.from_document(candidate), AnalyzeView.from_document(baseline)
    notes = [_pairing(cand, base)[1]]
    for key in sorted(set(cand.config) | set(base.config)):
        if cand.config.get(key) != base.config.get(key):
            notes.append(f"config {key}: candidate {cand.config.get(key)!r}, baseline {base.config.get(key)!r}")
    if cand.probe_method != base.probe_method:
        notes.append(f"probe method: candidate {cand.probe_method!r}, baseline {base.probe_method!r} "
                     "(they agree to ~1e-4 in s)")
    return notes


# --------------------------------------------------------------------------------------------
# The comparison


def pairing(candidate: Mapping[str, Any], baseline: Mapping[str, Any]) -> tuple[str, str]:
    """(``paired`` or ``independent``, a note): paired = the same sample range and steps (docs/design.md §2)."""
    return _pairing(AnalyzeView.from_document(candidate), AnalyzeView.from_document(baseline))


def _pairing(cand: AnalyzeView, base: AnalyzeView) -> tuple[str, str]:
    ranges = []
    for cfg in (cand.config, base.config):
        seed, samples = cfg.get("seed"), cfg.get("samples")
        ranges.append(range(seed, seed + samples) if isinstance(seed, int) and isinstance(samples, int) else None)
    c_range, b_range = ranges
    if c_range is None or b_range is None:
        return INDEPENDENT, "comparison: independent (a sample range is unknown)"
    show = lambda r: f"{r.start}..{r.stop - 1}"  # noqa: E731
    if c_range == b_range and cand.config.get("steps") == base.config.get("steps"):
        return PAIRED, f"comparison: paired (same sample range {show(c_range)}: common random numbers)"
    shared = len(set(c_range) & set(b_range))
    if shared:
        return INDEPENDENT, (f"comparison: independent, but the sample ranges {show(c_range)} and {show(b_range)} "
                             f"share {shared} samples (intervals assume independence)")
    return INDEPENDENT, f"comparison: independent (disjoint sample ranges {show(c_range)} and {show(b_range)})"


def compare_results(candidate: Mapping[str, Any], baseline: Mapping[str, Any],
                    tolerances: Tolerances = Tolerances()) -> list[CheckOutcome]:
    """All checks of ``candidate`` against ``baseline``, in report order (see module docstring)."""
    check_compatible(candidate, baseline)
    cand, base = AnalyzeView.from_document(candidate), AnalyzeView.from_document(baseline)
    paired = _pairing(cand, base)[0] == PAIRED
    outcomes = _critical_outcomes(cand.critical, base.critical, tolerances, paired)
    outcomes += _marker_outcomes(cand.critical, base.critical, tolerances, paired)
    n_common = min(len(cand.shells), len(base.shells))
    decided_tol = tolerances.paired_decided if paired else tolerances.decided
    for shell in range(_first_decided_shell(cand, base), n_common):
        outcomes.append(_decided_outcome(shell, cand, base, decided_tol,
                                         0.0 if paired else tolerances.ci_scale, tolerances.grid_points))
    for shell in range(min(n_common, tolerances.stiffness_shells)):
        bounded = [_bounded(view.curve("stiffness", shell)) for view in (cand, base)]
        outcomes.append(_curve_outcome(stiffness_check_name(shell), cand, base, bounded, tolerances.stiffness,
                                       tolerances.grid_points, log=False, unit="s/(1+|s|)"))
    for name, key, tol in ((CHECK_XI_STATE, "xi_state", tolerances.xi_state),
                           (CHECK_XI_DENOISED, "xi_denoised", tolerances.xi),
                           (CHECK_XI_EQ, "xi_eq", tolerances.xi_eq)):
        lengths = [view.curve(key) for view in (cand, base)]
        outcomes.append(_curve_outcome(name, cand, base, lengths, tol, tolerances.grid_points, log=True,
                                       unit="log xi"))
    return outcomes


def any_failed(outcomes: Iterable[CheckOutcome]) -> bool:
    return any(o.failed for o in outcomes)


def check(candidate: Mapping[str, Any] | Path | str, baseline: Mapping[str, Any] | Path | str,
          tolerances: Tolerances | Path | str | None = None) -> dict[str, Any]:
    """``diffcrit check`` on two analyze results (documents, or their JSON files) from Python -> the ``--json``
    document: ``passed``, every check, the tolerances (a ``Tolerances``, a YAML file's ``check:`` section, or the
    calibrated defaults with None) and the notes on config differences."""
    cand = candidate if isinstance(candidate, Mapping) else read_document(candidate, role="candidate")
    base = baseline if isinstance(baseline, Mapping) else read_document(baseline, role="baseline")
    tol = tolerances if isinstance(tolerances, Tolerances) else load_tolerances(tolerances)
    check_compatible(cand, base)
    return outcomes_to_dict(compare_results(cand, base, tol), tol, config_differences(cand, base))


def outcomes_to_dict(outcomes: list[CheckOutcome], tolerances: Tolerances,
                     notes: list[str] = ()) -> dict[str, Any]:
    """The ``--json`` document."""
    return {KEY_PASSED: not any_failed(outcomes), KEY_CHECKS: [o.to_dict() for o in outcomes],
            KEY_TOLERANCES: tolerances.to_dict(), KEY_NOTES: list(notes)}


def _critical_outcomes(cand: Critical, base: Critical, tol: Tolerances, paired: bool) -> list[CheckOutcome]:
    said = {True: "critical time found", False: "no critical time"}
    if cand.transition is not None or base.transition is not None:
        said = {True: "transition evidenced", False: "no transition evidenced"}
    detail = f"candidate: {said[cand.found]}; baseline: {said[base.found]}"
    if cand.primary != base.primary:
        detail += f" (primary markers differ: {cand.primary} vs {base.primary})"
    found_status = STATUS_PASS if cand.found == base.found and cand.primary == base.primary else STATUS_FAIL
    found = CheckOutcome(CHECK_CRITICAL_FOUND, found_status, None, None, "", detail)
    floor = tol.paired_critical_t if paired else tol.critical_t
    if floor is None:
        return [found, _skip(CHECK_CRITICAL_T, "turned off (tolerance null)", "t")]
    both = cand.found and base.found  # else the decision times of both sides: one meaning on each side
    c_time, b_time = cand.working_time(both), base.working_time(both)
    if c_time is None or b_time is None:
        return [found, _skip(CHECK_CRITICAL_T, "no critical or decision time on both sides", "t")]
    outcome = _shift_outcome(CHECK_CRITICAL_T, c_time, b_time, floor, 0.0 if paired else tol.ci_scale, paired)
    if SOURCE_DECISION in (c_time.source, b_time.source):
        outcome = dataclasses.replace(outcome, detail=outcome.detail + " (decision times: no transition evidenced)")
    return [found, outcome]


def _shift_outcome(name: str, cand: WorkingTime | Marker, base: WorkingTime | Marker, floor: float, ci_scale: float,
                   paired: bool) -> CheckOutcome:
    """|Δ t| against max(floor, ci_scale × combined 95% half-width); paired comparisons use the floor alone."""
    ci_allowed = ci_scale * math.hypot(_halfwidth(cand.ci95), _halfwidth(base.ci95))
    allowed = max(floor, ci_allowed)
    diff = cand.t - base.t
    why = (f"{'paired ' if paired else ''}tolerance {floor:g}" if allowed == floor
           else f"CI half-width {ci_allowed:.3g}")
    detail = f"candidate {_t_with_ci(cand)}, baseline {_t_with_ci(base)}; allowed by {why}"
    return CheckOutcome(name, _status(abs(diff), allowed), diff, allowed, "t", detail)


def _marker_outcomes(cand: Critical, base: Critical, tol: Tolerances, paired: bool) -> list[CheckOutcome]:
    floor = None if tol.markers is None else (tol.paired_critical_t if paired else tol.markers)
    outcomes = []
    for marker in marker_order(set(cand.markers) | set(base.markers)):
        name = marker_check_name(marker)
        c_m, b_m = cand.marker(marker), base.marker(marker)
        if floor is None:
            outcomes.append(_skip(name, "turned off (tolerance null)", "t"))
        elif c_m is None and b_m is None:
            outcomes.append(_skip(name, "found in neither result", "t"))
        elif c_m is None or b_m is None:
            side, present = ("baseline", b_m) if c_m is None else ("candidate", c_m)
            reliable = present.presence is None or present.presence >= MARKER_PRESENT
            status = STATUS_FAIL if tol.marker_presence and reliable else STATUS_SKIP
            where = f" (presence {present.presence:.2f})" if present.presence is not None else ""
            outcomes.append(CheckOutcome(name, status, None, floor, "t", f"found only in the {side}{where}"))
        else:
            outcomes.append(_shift_outcome(name, c_m, b_m, floor, 0.0 if paired else tol.ci_scale, paired))
    return outcomes


def _decided_outcome(shell: int, cand: AnalyzeView, base: AnalyzeView, floor: float | None, ci_scale: float,
                     grid_points: int) -> CheckOutcome:
    """Largest |Δ f_n(t)| of the decided fraction on a common t grid, against max(floor, ci_scale × CIs) at t."""
    name = f"{CHECK_DECIDED_PREFIX}{shell}"
    if floor is None:
        return _skip(name, "turned off (tolerance null)", "f")
    curves = [_finite_curve(view.steps.t, view.curve("decided", shell)) for view in (cand, base)]
    halves = [_finite_curve(view.steps.t, _halfwidths(view.curve("decided_ci95", shell))) for view in (cand, base)]
    if curves[0] is None and curves[1] is None:
        return _skip(name, "no decided fraction in either result (the samples do not vary, or an older result)", "f")
    if curves[0] is None or curves[1] is None:
        side = "candidate" if curves[0] is None else "baseline"
        return CheckOutcome(name, STATUS_FAIL, None, floor, "f", f"no decided fraction in the {side}")
    grid = _common_grid(curves[0], curves[1], grid_points)
    if grid is None:
        return CheckOutcome(name, STATUS_FAIL, None, floor, "f", "the t ranges of the two results do not overlap")
    diff = np.interp(grid, *curves[0]) - np.interp(grid, *curves[1])
    width = np.hypot(*(np.interp(grid, *h) if h is not None else np.zeros_like(grid) for h in halves))
    allowed = np.maximum(floor, ci_scale * width)
    worst = int(np.argmax(np.abs(diff) - allowed))
    detail = f"largest gap {diff[worst]:+.3g} at t = {grid[worst]:.2f} (allowed {allowed[worst]:.3g} there)"
    return CheckOutcome(name, _status(abs(diff[worst]), allowed[worst]), float(diff[worst]), float(allowed[worst]),
                        "f", detail)


def _first_decided_shell(cand: AnalyzeView, base: AnalyzeView) -> int:
    """Decided fractions are compared from the decision shell up: a shell below it (the DC shell of an image
    model) rests on one degree of freedom per sample, and its decided fraction moved by 0.38 between
    reseeds of builtin:digits (docs/design.md §6)."""
    shells = [view.critical.decision_shell for view in (cand, base)]
    return min(shells) if all(n is not None for n in shells) else 0


def _common_grid(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray], points: int) -> np.ndarray | None:
    lo, hi = max(a[0][0], b[0][0]), min(a[0][-1], b[0][-1])
    return np.linspace(lo, hi, points) if hi > lo else None


def _curve_outcome(name: str, cand: AnalyzeView, base: AnalyzeView, values: list[np.ndarray | None],
                   tolerance: float | None, grid_points: int, *, log: bool, unit: str) -> CheckOutcome:
    """RMS difference of one per-step curve (``values``: the candidate's, the baseline's, over each view's steps)
    on a common t grid (log-ratio for lengths)."""
    if tolerance is None:
        return _skip(name, "turned off (tolerance null)", unit)
    c_curve, b_curve = (_finite_curve(view.steps.t, v) for view, v in zip((cand, base), values, strict=True))
    if b_curve is None and c_curve is None:
        return _skip(name, "no values in either result", unit)
    if c_curve is None or b_curve is None:
        side = "candidate" if c_curve is None else "baseline"
        return CheckOutcome(name, STATUS_FAIL, None, tolerance, unit, f"no values in the {side}")
    grid = _common_grid(c_curve, b_curve, grid_points)
    if grid is None:
        return CheckOutcome(name, STATUS_FAIL, None, tolerance, unit, "the t ranges of the two results do not overlap")
    lo, hi = grid[0], grid[-1]
    c_vals, b_vals = (np.interp(grid, t, v) for t, v in (c_curve, b_curve))
    if log:
        c_vals, b_vals = (np.log(np.maximum(v, XI_FLOOR_PX)) for v in (c_vals, b_vals))
    diff = c_vals - b_vals
    rms = float(np.sqrt(np.mean(diff**2)))
    worst = int(np.argmax(np.abs(diff)))
    span = f"t in [{lo:.2f}, {hi:.2f}]"
    detail = f"largest gap {diff[worst]:+.3g} at t = {grid[worst]:.2f}, over {span}" if rms > 0 else \
        f"identical over {span}"
    return CheckOutcome(name, _status(rms, tolerance), rms, tolerance, f"RMS {unit}", detail)


def _finite_curve(t: np.ndarray, values: np.ndarray | None) -> tuple[np.ndarray, np.ndarray] | None:
    """(t ascending, values) over the steps with a finite value; None when fewer than 2."""
    if values is None:
        return None
    kept = np.isfinite(values)
    return (t[kept], values[kept]) if kept.sum() >= 2 else None


def _halfwidths(band: np.ndarray | None) -> np.ndarray | None:
    """(S, 2) intervals -> (S,) half-widths (NaN where there is none)."""
    return None if band is None else np.abs(band[:, 1] - band[:, 0]) / 2


def _bounded(s: np.ndarray | None) -> np.ndarray | None:
    """s/(1+|s|): the stiffness mapped into (-1, 1), so no step of a curve dominates an RMS."""
    return None if s is None else s / (1 + np.abs(s))


def _halfwidth(ci: tuple[float, float] | None) -> float:
    return abs(ci[1] - ci[0]) / 2 if ci is not None else 0.0


def _t_with_ci(time: WorkingTime | Marker) -> str:
    text = f"{time.t:.3f}"
    if time.ci95 is not None:
        text += f" [{time.ci95[0]:.3f}, {time.ci95[1]:.3f}]"
    return text


def _status(measured: float, allowed: float) -> str:
    return STATUS_PASS if measured <= allowed + 1e-12 else STATUS_FAIL


def _skip(name: str, detail: str, unit: str) -> CheckOutcome:
    return CheckOutcome(name, STATUS_SKIP, None, None, unit, detail)


def _finite_or_none(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None
