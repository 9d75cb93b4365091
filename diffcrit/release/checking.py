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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from ..analysis.detection import MARKERS
from ..errors import UserError
from ..io import read_text
from ..report.document import KIND_ANALYZE, validate_document, working_time

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
    grid_points: int = 64

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# Field kinds for validation: "tol" = number >= 0 or null, "number" = number >= 0,
# "bool" = true/false, "count" = integer >= 1 (grid_points >= 2).
_FIELD_KINDS = {"critical_t": "tol", "ci_scale": "number", "paired_critical_t": "tol", "markers": "tol",
                "marker_presence": "bool", "decided": "tol", "paired_decided": "tol", "stiffness": "tol",
                "stiffness_shells": "count", "xi": "tol", "xi_state": "tol", "xi_eq": "tol", "grid_points": "count"}

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


def tolerances_from_mapping(data: Mapping[str, Any] | None, source: str = "tolerances") -> Tolerances:
    """Validate a mapping of tolerance overrides; unknown keys and wrong types are user errors."""
    if data is None:
        return Tolerances()
    if not isinstance(data, Mapping):
        raise UserError(f"{source}: expected a mapping of tolerances, got {type(data).__name__}")
    allowed = ", ".join(_FIELD_KINDS)
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key not in _FIELD_KINDS:
            raise UserError(f"{source}: unknown key {key!r}", f"allowed: {allowed}")
        values[key] = _validated(f"{source}: {key}", _FIELD_KINDS[key], value, minimum=2 if key == "grid_points" else 1)
    return Tolerances(**values)


def load_tolerances(path: Path | str | None) -> Tolerances:
    """Read the ``check:`` section of a diffcrit.yaml; ``None`` gives the documented defaults."""
    if path is None:
        return Tolerances()
    import yaml

    path = Path(path)
    text = read_text(path, "config")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise UserError(f"config {path} is not valid YAML{where}") from None
    if data is None:
        return Tolerances()
    if not isinstance(data, Mapping):
        raise UserError(f"config {path}: expected a mapping with a '{CONFIG_SECTION}:' section")
    unknown = [key for key in data if key != CONFIG_SECTION]
    if unknown:
        raise UserError(f"config {path}: unknown key {unknown[0]!r}", f"allowed: {CONFIG_SECTION}")
    return tolerances_from_mapping(data.get(CONFIG_SECTION), f"{path}: {CONFIG_SECTION}")


def _validated(where: str, kind: str, value: Any, minimum: int = 1) -> Any:
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "bool":
        if not isinstance(value, bool):
            raise UserError(f"{where} must be true or false, got {value!r}")
        return value
    if kind == "count":
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            raise UserError(f"{where} must be an integer >= {minimum}, got {value!r}")
        return value
    if kind == "tol" and value is None:
        return None
    if not is_number or not math.isfinite(value) or value < 0:
        allowed = "a number >= 0 or null" if kind == "tol" else "a number >= 0"
        raise UserError(f"{where} must be {allowed}, got {value!r}")
    return float(value)


# --------------------------------------------------------------------------------------------
# Compatibility (result files are read and validated by report.read_document)


def check_compatible(candidate: Mapping[str, Any], baseline: Mapping[str, Any]) -> None:
    """Raise ``UserError`` unless the two analyze results can be compared at all."""
    validate_document(candidate, KIND_ANALYZE, "candidate")
    validate_document(baseline, KIND_ANALYZE, "baseline")
    check_same_shape(candidate["model"]["shape"], baseline["model"]["shape"])
    common = min(len(candidate["shells"]), len(baseline["shells"]))
    c_k, b_k = candidate["shells"][:common], baseline["shells"][:common]
    if not np.allclose(np.asarray(c_k, float), np.asarray(b_k, float), rtol=1e-6, atol=1e-9):
        raise UserError("the results use different shell wave numbers (shells)",
                        "analyse the candidate with the baseline's config: diffcrit check --model")


def check_same_shape(candidate: Iterable[int], baseline: Iterable[int]) -> None:
    """Raise ``UserError`` unless the candidate model samples in the baseline's (C, H, W)."""
    candidate, baseline = list(candidate), list(baseline)
    if candidate != baseline:
        raise UserError(f"different model shapes: candidate {candidate}, baseline {baseline}",
                        "compare checkpoints of the same architecture")


def config_differences(candidate: Mapping[str, Any], baseline: Mapping[str, Any]) -> list[str]:
    """Notes (not failures) on resolved config options that differ, e.g. ``steps: 100 vs 50``,
    and on the probe method used (``--probe auto`` resolves per model and version)."""
    c_cfg, b_cfg = candidate.get("config") or {}, baseline.get("config") or {}
    notes = [pairing(candidate, baseline)[1]]
    for key in sorted(set(c_cfg) | set(b_cfg)):
        if c_cfg.get(key) != b_cfg.get(key):
            notes.append(f"config {key}: candidate {c_cfg.get(key)!r}, baseline {b_cfg.get(key)!r}")
    c_method, b_method = ((doc.get("environment") or {}).get("probe_method") for doc in (candidate, baseline))
    if c_method != b_method:
        notes.append(f"probe method: candidate {c_method!r}, baseline {b_method!r} (they agree to ~1e-4 in s)")
    return notes


# --------------------------------------------------------------------------------------------
# The comparison


def pairing(candidate: Mapping[str, Any], baseline: Mapping[str, Any]) -> tuple[str, str]:
    """(``paired`` or ``independent``, a note): paired = the same sample range and steps (docs/design.md §2)."""
    c_cfg, b_cfg = candidate.get("config") or {}, baseline.get("config") or {}
    ranges = []
    for cfg in (c_cfg, b_cfg):
        seed, samples = cfg.get("seed"), cfg.get("samples")
        ranges.append(range(seed, seed + samples) if isinstance(seed, int) and isinstance(samples, int) else None)
    c_range, b_range = ranges
    if c_range is None or b_range is None:
        return INDEPENDENT, "comparison: independent (a sample range is unknown)"
    show = lambda r: f"{r.start}..{r.stop - 1}"  # noqa: E731
    if c_range == b_range and c_cfg.get("steps") == b_cfg.get("steps"):
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
    paired = pairing(candidate, baseline)[0] == PAIRED
    outcomes = _critical_outcomes(candidate["critical"], baseline["critical"], tolerances, paired)
    outcomes += _marker_outcomes(candidate["critical"], baseline["critical"], tolerances, paired)
    n_common = min(len(candidate["shells"]), len(baseline["shells"]))
    decided_tol = tolerances.paired_decided if paired else tolerances.decided
    for shell in range(_first_decided_shell(candidate, baseline), n_common):
        outcomes.append(_decided_outcome(shell, candidate, baseline, decided_tol,
                                         0.0 if paired else tolerances.ci_scale, tolerances.grid_points))
    for shell in range(min(n_common, tolerances.stiffness_shells)):
        outcomes.append(_curve_outcome(stiffness_check_name(shell), candidate, baseline,
                                       lambda step, n=shell: _bounded(_shell_value(step, "stiffness", n)),
                                       tolerances.stiffness, tolerances.grid_points, log=False, unit="s/(1+|s|)"))
    for name, key, tol in ((CHECK_XI_STATE, "xi_state", tolerances.xi_state),
                           (CHECK_XI_DENOISED, "xi_denoised", tolerances.xi),
                           (CHECK_XI_EQ, "xi_eq", tolerances.xi_eq)):
        outcomes.append(_curve_outcome(name, candidate, baseline, lambda step, k=key: step.get(k),
                                       tol, tolerances.grid_points, log=True, unit="log xi"))
    return outcomes


def any_failed(outcomes: Iterable[CheckOutcome]) -> bool:
    return any(o.failed for o in outcomes)


def outcomes_to_dict(outcomes: list[CheckOutcome], tolerances: Tolerances,
                     notes: list[str] = ()) -> dict[str, Any]:
    """The ``--json`` document."""
    return {KEY_PASSED: not any_failed(outcomes), KEY_CHECKS: [o.to_dict() for o in outcomes],
            KEY_TOLERANCES: tolerances.to_dict(), KEY_NOTES: list(notes)}


def _critical_outcomes(cand: Mapping[str, Any], base: Mapping[str, Any], tol: Tolerances,
                       paired: bool) -> list[CheckOutcome]:
    c_found, b_found = bool(cand.get("found")), bool(base.get("found"))
    said = {True: "critical time found", False: "no critical time"}
    if "transition" in cand or "transition" in base:
        said = {True: "transition evidenced", False: "no transition evidenced"}
    primaries = {cand.get("primary"), base.get("primary")}
    detail = f"candidate: {said[c_found]}; baseline: {said[b_found]}"
    if len(primaries) > 1:
        detail += f" (primary markers differ: {cand.get('primary')} vs {base.get('primary')})"
    found_status = STATUS_PASS if c_found == b_found and len(primaries) == 1 else STATUS_FAIL
    found = CheckOutcome(CHECK_CRITICAL_FOUND, found_status, None, None, "", detail)
    floor = tol.paired_critical_t if paired else tol.critical_t
    if floor is None:
        return [found, _skip(CHECK_CRITICAL_T, "turned off (tolerance null)", "t")]
    both = c_found and b_found  # else the decision times of both sides: one meaning on each side
    c_time, b_time = working_time(cand, both), working_time(base, both)
    if c_time is None or b_time is None:
        return [found, _skip(CHECK_CRITICAL_T, "no critical or decision time on both sides", "t")]
    outcome = _shift_outcome(CHECK_CRITICAL_T, c_time, b_time, floor, 0.0 if paired else tol.ci_scale, paired)
    if "decision" in (c_time["source"], b_time["source"]):
        outcome = dataclasses.replace(outcome, detail=outcome.detail + " (decision times: no transition evidenced)")
    return [found, outcome]


def _shift_outcome(name: str, cand: Mapping[str, Any], base: Mapping[str, Any], floor: float, ci_scale: float,
                   paired: bool) -> CheckOutcome:
    """|Δ t| against max(floor, ci_scale × combined 95% half-width); paired comparisons use the floor alone."""
    h_c, h_b = _halfwidth(cand.get("ci95")), _halfwidth(base.get("ci95"))
    ci_allowed = ci_scale * math.hypot(h_c, h_b)
    allowed = max(floor, ci_allowed)
    diff = float(cand["t"]) - float(base["t"])
    why = (f"{'paired ' if paired else ''}tolerance {floor:g}" if allowed == floor
           else f"CI half-width {ci_allowed:.3g}")
    detail = f"candidate {_t_with_ci(cand)}, baseline {_t_with_ci(base)}; allowed by {why}"
    return CheckOutcome(name, _status(abs(diff), allowed), diff, allowed, "t", detail)


def _marker_outcomes(cand: Mapping[str, Any], base: Mapping[str, Any], tol: Tolerances,
                     paired: bool) -> list[CheckOutcome]:
    c_markers, b_markers = cand.get("markers") or {}, base.get("markers") or {}
    names = [m for m in MARKERS if m in c_markers or m in b_markers]
    names += sorted((set(c_markers) | set(b_markers)) - set(MARKERS))
    floor = None if tol.markers is None else (tol.paired_critical_t if paired else tol.markers)
    outcomes = []
    for marker in names:
        name = marker_check_name(marker)
        c_m, b_m = c_markers.get(marker), b_markers.get(marker)
        c_t, b_t = _marker_t(c_m), _marker_t(b_m)
        if floor is None:
            outcomes.append(_skip(name, "turned off (tolerance null)", "t"))
        elif c_t is None and b_t is None:
            outcomes.append(_skip(name, "found in neither result", "t"))
        elif c_t is None or b_t is None:
            side, present = ("baseline", b_m) if c_t is None else ("candidate", c_m)
            presence = present.get("presence")
            reliable = not _is_number(presence) or presence >= MARKER_PRESENT
            status = STATUS_FAIL if tol.marker_presence and reliable else STATUS_SKIP
            where = f" (presence {presence:.2f})" if _is_number(presence) else ""
            outcomes.append(CheckOutcome(name, status, None, floor, "t", f"found only in the {side}{where}"))
        else:
            outcomes.append(_shift_outcome(name, c_m, b_m, floor, 0.0 if paired else tol.ci_scale, paired))
    return outcomes


def _decided_outcome(shell: int, candidate: Mapping[str, Any], baseline: Mapping[str, Any], floor: float | None,
                     ci_scale: float, grid_points: int) -> CheckOutcome:
    """Largest |Δ f_n(t)| of the decided fraction on a common t grid, against max(floor, ci_scale × CIs) at t."""
    name = f"{CHECK_DECIDED_PREFIX}{shell}"
    if floor is None:
        return _skip(name, "turned off (tolerance null)", "f")
    curves = [_curve(doc["steps"], lambda step: _shell_value(step, "decided", shell)) for doc in (candidate, baseline)]
    halves = [_curve(doc["steps"], lambda step: _ci_half(step, shell)) for doc in (candidate, baseline)]
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


def _first_decided_shell(candidate: Mapping[str, Any], baseline: Mapping[str, Any]) -> int:
    """Decided fractions are compared from the decision shell up: a shell below it (the DC shell of an image
    model) rests on one degree of freedom per sample, and its decided fraction moved by 0.38 between
    reseeds of builtin:digits (docs/design.md §6)."""
    shells = [doc["critical"].get("decision_shell") for doc in (candidate, baseline)]
    return min(shells) if all(isinstance(n, int) for n in shells) else 0


def _common_grid(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray], points: int) -> np.ndarray | None:
    lo, hi = max(a[0][0], b[0][0]), min(a[0][-1], b[0][-1])
    return np.linspace(lo, hi, points) if hi > lo else None


def _curve_outcome(name: str, candidate: Mapping[str, Any], baseline: Mapping[str, Any], value_of,
                   tolerance: float | None, grid_points: int, *, log: bool, unit: str) -> CheckOutcome:
    """RMS difference of one per-step curve on a common t grid (log-ratio for lengths)."""
    if tolerance is None:
        return _skip(name, "turned off (tolerance null)", unit)
    c_curve, b_curve = _curve(candidate["steps"], value_of), _curve(baseline["steps"], value_of)
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


def _curve(steps: list[Mapping[str, Any]], value_of) -> tuple[np.ndarray, np.ndarray] | None:
    """(t ascending, values) over the steps with a finite value; None when fewer than 2."""
    pairs = sorted((float(s["t"]), float(v)) for s in steps if _is_number(v := value_of(s)))
    if len(pairs) < 2:
        return None
    t, v = np.array(pairs).T
    return t, v


def _shell_value(step: Mapping[str, Any], key: str, shell: int) -> Any:
    values = step.get(key)
    return values[shell] if isinstance(values, list) and shell < len(values) else None


def _ci_half(step: Mapping[str, Any], shell: int) -> float | None:
    ci = _shell_value(step, "decided_ci95", shell)
    return _halfwidth(ci) if _is_interval(ci) else None


def _bounded(s: Any) -> float | None:
    """s/(1+|s|): the stiffness mapped into (-1, 1), so no step of a curve dominates an RMS."""
    return s / (1 + abs(s)) if _is_number(s) else None


def _marker_t(marker: Any) -> float | None:
    return float(marker["t"]) if isinstance(marker, Mapping) and _is_number(marker.get("t")) else None


def _is_interval(ci: Any) -> bool:
    return isinstance(ci, list) and len(ci) == 2 and all(_is_number(v) for v in ci)


def _halfwidth(ci: Any) -> float:
    return abs(ci[1] - ci[0]) / 2 if _is_interval(ci) else 0.0


def _t_with_ci(critical: Mapping[str, Any]) -> str:
    ci = critical.get("ci95")
    text = f"{critical['t']:.3f}"
    if _is_interval(ci):
        text += f" [{ci[0]:.3f}, {ci[1]:.3f}]"
    return text


def _status(measured: float, allowed: float) -> str:
    return STATUS_PASS if measured <= allowed + 1e-12 else STATUS_FAIL


def _skip(name: str, detail: str, unit: str) -> CheckOutcome:
    return CheckOutcome(name, STATUS_SKIP, None, None, unit, detail)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _finite_or_none(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None
