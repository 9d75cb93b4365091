"""The one typed view of result documents: what figures, ``check``, the summaries and ``guide`` read.

A document read by ``report.document.read_document`` is valid against its shipped schema (docs/design.md §9);
the view turns it into frozen dataclasses once, so readers never chain ``.get(..) or {}``. Optional parts
of a document are ``None`` here, never ``{}``; a per-step value that is null (undefined, not probed) is NaN
in a curve; a curve no step carries at all (results of diffcrit 0.1.0) is ``None``.

Notation (docs/design.md §2): ``t = log(1 + sigma^2)``; the view's steps are in ascending t, the x axis of every
figure and check grid (generation order is the reverse).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Iterable, Mapping

import numpy as np

from ..analysis.detection import DECISION, MARKERS
from ..errors import shorten
from .document import KIND_GUIDE

Interval = tuple[float, float]

SCALAR_CURVES = ("xi_state", "xi_denoised", "xi_eq", "r", "kappa")  # one value per step
SHELL_CURVES = ("stiffness", "stiffness_sem", "decided", "gaussian_stiffness", "gaussian_decided", "null_decided",
                "unstable_fraction")  # one value per shell and step
BAND_CURVES = ("decided_ci95", "unstable_fraction_ci95")  # one [lo, hi] per shell and step

SOURCE_CRITICAL, SOURCE_DECISION = "critical", "decision"


# --------------------------------------------------------------------------------------------
# Values as the documents hold them (null, or an old result's missing key, becomes None)


def number(value: Any) -> float | None:
    """A finite JSON number as float; None for null, a bool or anything else."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok else None


def interval(value: Any) -> Interval | None:
    """A [lo, hi] pair of finite numbers as a tuple; None otherwise."""
    if isinstance(value, (list, tuple)) and len(value) == 2:
        lo, hi = number(value[0]), number(value[1])
        if lo is not None and hi is not None:
            return lo, hi
    return None


def integer(value: Any) -> int | None:
    """A JSON integer; None for null, a bool or anything else."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _nan(value: Any) -> float:
    found = number(value)
    return math.nan if found is None else found


def marker_order(names: Iterable[str]) -> list[str]:
    """Marker names in the order of docs/design.md §6 (``analysis.detection.MARKERS``), unknown ones after, sorted."""
    names = set(names)
    return [m for m in MARKERS if m in names] + sorted(names - set(MARKERS))


def _frozen(mapping: Any) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping) if isinstance(mapping, Mapping) else {})


# --------------------------------------------------------------------------------------------
# Parts shared by both kinds


@dataclass(frozen=True)
class ModelInfo:
    """``model``: the id, the sample shape (C, H, W), what the run was conditioned on (models/conditioning)."""

    id: str
    shape: tuple[int, ...]
    conditioning: Mapping[str, Any] | None

    @classmethod
    def from_document(cls, model: Mapping[str, Any] | None, fallback_id: str = "?") -> ModelInfo:
        model = model or {}
        conditioning = model.get("conditioning")
        return cls(str(model.get("id", fallback_id)), tuple(model.get("shape") or ()),
                   _frozen(conditioning) if conditioning else None)

    @property
    def guided(self) -> bool:
        """Whether ``--guidance-scale`` guided every step (model.conditioning.cfg)."""
        return bool(self.conditioning and self.conditioning.get("cfg"))

    def conditioned(self) -> str:
        """What the run was conditioned on, for titles and labels: "class 3, CFG 3", 'prompt "a red barn"', ""."""
        c = self.conditioning
        if not c:
            return ""
        kind = c.get("type")
        parts = [f"class {c.get('class_label')}" if kind == "class" else
                 f'prompt "{shorten(str(c.get("prompt") or ""), 40)}"' if kind == "prompt" else
                 "prompt embeddings"]
        if c.get("cfg"):
            parts.append(f"CFG {float(c['cfg']['scale']):g}")
        return ", ".join(parts)


@dataclass(frozen=True)
class WorkingTime:
    """The time ``check`` and ``guide`` work with: ``t``, its ``ci95``, and its ``source`` (critical: a transition
    was evidenced; decision: the decision shell's speciation time; or where guide took it from)."""

    t: float
    ci95: Interval | None
    source: str


# --------------------------------------------------------------------------------------------
# Analyze results


@dataclass(frozen=True)
class Marker:
    """``critical.markers.<name>`` (docs/design.md §6): ``t`` None when not found."""

    name: str
    t: float | None
    ci95: Interval | None
    presence: float | None
    multimodal: bool
    modes: tuple[float, ...]  # t of each bootstrap mode
    sigma: float | None
    step: int | None

    @classmethod
    def from_document(cls, name: str, entry: Mapping[str, Any] | None) -> Marker:
        entry = entry or {}
        modes = tuple(t for m in entry.get("modes") or [] if isinstance(m, Mapping) and (t := number(m.get("t")))
                      is not None)
        return cls(name, number(entry.get("t")), interval(entry.get("ci95")), number(entry.get("presence")),
                   bool(entry.get("multimodal")), modes, number(entry.get("sigma")), integer(entry.get("step")))

    @property
    def found(self) -> bool:
        return self.t is not None


@dataclass(frozen=True)
class Transition:
    """``critical.transition``: the verdict against the Gaussian null (docs/design.md §6a)."""

    evidence: bool
    shell: int | None
    statistic: str | None
    value: float | None
    ci95: Interval | None
    margin: float | None
    sampler_calibrated: bool | None

    @classmethod
    def from_document(cls, verdict: Mapping[str, Any]) -> Transition:
        calibrated = verdict.get("sampler_calibrated")
        return cls(bool(verdict.get("evidence")), integer(verdict.get("shell")), verdict.get("statistic"),
                   number(verdict.get("value")), interval(verdict.get("ci95")), number(verdict.get("margin")),
                   calibrated if isinstance(calibrated, bool) else None)


@dataclass(frozen=True)
class Critical:
    """``critical``: the primary marker's time (docs/design.md §6), every marker, the transition verdict."""

    found: bool
    t: float | None
    sigma: float | None
    step: int | None
    ci95: Interval | None
    primary: str | None
    regime: str | None
    decision_shell: int | None
    markers: Mapping[str, Marker]  # every marker the result names, found or not, in the document's order
    transition: Transition | None

    @classmethod
    def from_document(cls, critical: Mapping[str, Any] | None) -> Critical:
        critical = critical or {}
        markers = {name: Marker.from_document(name, entry) for name, entry in (critical.get("markers") or {}).items()}
        verdict = critical.get("transition")
        return cls(bool(critical.get("found")), number(critical.get("t")), number(critical.get("sigma")),
                   integer(critical.get("step")), interval(critical.get("ci95")), critical.get("primary"),
                   critical.get("regime"), integer(critical.get("decision_shell")), MappingProxyType(markers),
                   Transition.from_document(verdict) if isinstance(verdict, Mapping) else None)

    def marker(self, name: str) -> Marker | None:
        """The marker ``name`` when found, else None."""
        marker = self.markers.get(name)
        return marker if marker is not None and marker.found else None

    @property
    def located(self) -> bool:
        """A critical time is there to draw: found, with a t."""
        return self.found and self.t is not None

    def working_time(self, prefer_critical: bool = True) -> WorkingTime | None:
        """The critical time where a transition was evidenced (``found``, and ``prefer_critical``), else the decision
        time of the decision shell (``markers.decision``: a crossover's speciation time, which every run with varying
        samples has); None when neither exists."""
        if prefer_critical and self.located:
            return WorkingTime(self.t, self.ci95, SOURCE_CRITICAL)
        decision = self.marker(DECISION)
        return None if decision is None else WorkingTime(decision.t, decision.ci95, SOURCE_DECISION)

    def transition_words(self) -> str:
        """The transition verdict in words, for summaries and figure titles."""
        decision = self.markers.get(DECISION)
        t = decision.t if decision else None
        ci = decision.ci95 if decision else None
        at = "" if t is None else f" at t = {t:.3g}" + (f" [{ci[0]:.3g}, {ci[1]:.3g}]" if ci else "")
        if self.transition is not None and self.transition.evidence:
            return f"transition in shell {self.transition.shell}{at}"
        shell = self.decision_shell
        decides = f" (shell {shell} decides{at})" if shell is not None and t is not None else ""
        return f"no evidence of a phase transition beyond a Gaussian crossover{decides}"


@dataclass(frozen=True)
class Steps:
    """``steps`` in ascending t: the time of each, whether it was probed, whether its x0 estimate is inconsistent,
    and the per-step values as curves (``curve``)."""

    t: np.ndarray  # (S,) float, ascending
    probed: np.ndarray  # (S,) bool
    inconsistent: np.ndarray  # (S,) bool: x0_consistent is false, or diagnostics list the step
    n_shells: int
    rows: tuple[Mapping[str, Any], ...]

    @classmethod
    def from_document(cls, steps: list[Mapping[str, Any]], n_shells: int, inconsistent: tuple[int, ...]) -> Steps:
        rows = tuple(sorted(steps, key=lambda s: float(s["t"])))
        probed = [s["probed"] if isinstance(s.get("probed"), bool) else isinstance(s.get("stiffness"), list)
                  for s in rows]
        bad = [s.get("x0_consistent") is False or s.get("index") in inconsistent for s in rows]
        return cls(np.array([float(s["t"]) for s in rows]), np.array(probed, dtype=bool), np.array(bad, dtype=bool),
                   n_shells, rows)

    def __len__(self) -> int:
        return len(self.rows)

    def has(self, name: str) -> np.ndarray:
        """(S,) bool: the step carries a value of ``name`` (not null, not missing)."""
        return np.array([s.get(name) is not None for s in self.rows], dtype=bool)

    def curve(self, name: str, shell: int | None = None) -> np.ndarray | None:
        """Per-step values of ``name``, NaN where null: (S,) for a scalar curve or one ``shell``, (S, K) for every
        shell, with a trailing [lo, hi] axis for a band (``BAND_CURVES``); None when no step carries ``name``."""
        if name not in SCALAR_CURVES + SHELL_CURVES + BAND_CURVES:
            raise KeyError(f"no curve {name!r} in a result's steps")
        if not any(name in s for s in self.rows):
            return None
        if name in SCALAR_CURVES:
            return np.array([_nan(s.get(name)) for s in self.rows])
        band = name in BAND_CURVES
        out = np.full((len(self.rows), self.n_shells) + ((2,) if band else ()), np.nan)
        for i, step in enumerate(self.rows):
            values = step.get(name)
            for n, value in enumerate(values[:self.n_shells] if isinstance(values, list) else []):
                out[i, n] = (interval(value) or (math.nan, math.nan)) if band else _nan(value)
        return out if shell is None else out[:, shell] if shell < self.n_shells else np.full(out.shape[:1], np.nan)


@dataclass(frozen=True)
class Theory:
    """``theory`` of an analytic model: each marker's exact t and the measured minus predicted differences."""

    markers: Mapping[str, float]
    measured_minus_predicted: Mapping[str, float]


@dataclass(frozen=True)
class Instability:
    """``instability`` (docs/design.md §5): per shell the largest share of probe trajectories unstable at a probed
    step, with its exact ci95 and t; and the share a probed step would have shown (``detectable_fraction``)."""

    probe_points: int
    probed_steps: int
    peak_fraction: tuple[float, ...]
    peak_ci95: tuple[Interval | None, ...]
    peak_t: tuple[float | None, ...]
    onset_found: bool
    detectable_fraction: float | None
    detection_power: float | None

    @classmethod
    def from_document(cls, block: Mapping[str, Any]) -> Instability:
        return cls(int(block["probe_points"]), int(block["probed_steps"]),
                   tuple(float(f) for f in block["peak_fraction"]),
                   tuple(interval(c) for c in block["peak_ci95"]), tuple(number(t) for t in block["peak_t"]),
                   bool(block["onset_found"]), number(block.get("detectable_fraction")),
                   number(block.get("detection_power")))


@dataclass(frozen=True)
class AnalyzeView:
    """An analyze result (``result.schema.json``)."""

    model: ModelInfo
    config: Mapping[str, Any]  # the resolved config (diffcrit.config), as run
    probe_method: str | None
    shells: np.ndarray  # (K,) wave numbers k_n = 2 pi n / L
    steps: Steps
    n_steps: int
    inconsistent_steps: tuple[int, ...]  # diagnostics.total_variance: the steps whose x0 estimate is inconsistent
    critical: Critical
    theory: Theory | None
    instability: Instability | None = None  # results before 0.2 and runs at y = 0 have none

    @classmethod
    def from_document(cls, doc: Mapping[str, Any], fallback_id: str = "?") -> AnalyzeView:
        shells = np.asarray(doc.get("shells") or [], dtype=float)
        steps = doc.get("steps") or []
        n_shells = len(shells) or max((len(s.get("decided") or s.get("stiffness") or []) for s in steps), default=0)
        listed = ((doc.get("diagnostics") or {}).get("total_variance") or {}).get("inconsistent_steps") or []
        theory = doc.get("theory")
        return cls(ModelInfo.from_document(doc.get("model"), fallback_id), _frozen(doc.get("config")),
                   (doc.get("environment") or {}).get("probe_method"), shells,
                   Steps.from_document(steps, n_shells, tuple(listed)), len(steps), tuple(listed),
                   Critical.from_document(doc.get("critical")),
                   Theory(_frozen(theory.get("markers")), _frozen(theory.get("measured_minus_predicted")))
                   if isinstance(theory, Mapping) else None,
                   Instability.from_document(doc["instability"]) if isinstance(doc.get("instability"), Mapping)
                   else None)

    def curve(self, name: str, shell: int | None = None) -> np.ndarray | None:
        """``steps.curve``: e.g. ``view.curve("decided", 1)``, (S,) in ascending t."""
        return self.steps.curve(name, shell)

    @property
    def decision_shell(self) -> int:
        """The decision shell, 0 where the result names none."""
        return self.critical.decision_shell or 0

    def drawn_shells(self, low: int) -> list[int]:
        """Shells 0..low-1 and the decision shell."""
        n = self.steps.n_shells
        return sorted(set(range(min(low, n))) | {self.decision_shell} & set(range(n)))


# --------------------------------------------------------------------------------------------
# Guide results


@dataclass(frozen=True)
class Stat:
    """A metric's mean and its 95% CI (``guide.schema.json`` #summary)."""

    mean: float | None
    ci95: Interval | None

    @classmethod
    def from_document(cls, stat: Any) -> Stat:
        stat = stat if isinstance(stat, Mapping) else {}
        return cls(number(stat.get("mean")), interval(stat.get("ci95")))


def _metrics(metrics: Any) -> Mapping[str, Stat]:
    return MappingProxyType({m: Stat.from_document(s) for m, s in (metrics or {}).items()})


@dataclass(frozen=True)
class Arm:
    """One arm of guide: the windows in t it guided (one per sample where random), its steps, its metrics."""

    name: str
    n: int | None
    windows: tuple[Interval, ...]
    guided_steps_mean: float | None
    metrics: Mapping[str, Stat]

    @classmethod
    def from_document(cls, arm: Mapping[str, Any]) -> Arm:
        windows = tuple(w for window in arm.get("windows") or [] if (w := interval(window)) is not None)
        return cls(arm["name"], integer(arm.get("n")), windows, number(arm.get("guided_steps_mean")),
                   _metrics(arm.get("metrics")))


@dataclass(frozen=True)
class Comparison:
    """A paired comparison ``arm - versus`` in ``metric`` (docs/design.md §11)."""

    arm: str
    versus: str
    metric: str
    diff_mean: float | None
    ci95: Interval | None
    p_value: float | None  # wilcoxon_p in results of diffcrit 0.1
    effect_size: float | None

    @property
    def pair(self) -> str:
        return f"{self.arm} − {self.versus}"


@dataclass(frozen=True)
class Block:
    """One block of the sweep's profile: its mean t, each metric."""

    t_center: float
    metrics: Mapping[str, Stat]


@dataclass(frozen=True)
class Peak:
    """The sweep's peak block: its metric, mean t with the bootstrap ci95, its steps and share of resamples."""

    metric: str
    t: float | None
    ci95: Interval | None
    steps: tuple[int, int] | None
    share: float | None


@dataclass(frozen=True)
class Sweep:
    """``guide --sweep``: blocks of ``block_steps`` consecutive steps, the profile over t and its peak."""

    block_steps: int
    base: str
    profile: tuple[Block, ...]
    peak: Peak | None


@dataclass(frozen=True)
class GuideView:
    """A guide result (``guide.schema.json``)."""

    model: ModelInfo
    critical: WorkingTime | None
    window_width_t: float | None
    guidance_scale: float | None
    base: str  # what a sample runs on outside its window: conditional or unconditional (docs/design.md §11)
    notes: tuple[str, ...]
    scored: bool
    metric_names: tuple[str, ...]
    arms: tuple[Arm, ...]
    comparisons: tuple[Comparison, ...]
    sweep: Sweep | None

    @classmethod
    def from_document(cls, doc: Mapping[str, Any], fallback_id: str = "?") -> GuideView:
        critical = doc.get("critical") or {}
        t = number(critical.get("t"))
        arms = tuple(Arm.from_document(arm) for arm in doc.get("arms") or [])
        comparisons = tuple(
            Comparison(c["arm"], c["versus"], c.get("metric"), number(c.get("diff_mean")), interval(c.get("ci95")),
                       number(c.get("p_value", c.get("wilcoxon_p"))), number(c.get("effect_size")))
            for c in doc.get("comparisons") or [])
        return cls(ModelInfo.from_document(doc.get("model"), fallback_id),
                   None if t is None else WorkingTime(t, interval(critical.get("ci95")), str(critical.get("source"))),
                   number(doc.get("window_width_t")), number(doc.get("guidance_scale")),
                   doc.get("base", "conditional"), tuple(doc.get("notes") or ()),
                   bool(doc.get("scored") and doc.get("metric_names")),
                   tuple(doc.get("metric_names") or ()), arms, comparisons, _sweep(doc.get("sweep")))

    def arm(self, name: str) -> Arm | None:
        return next((a for a in self.arms if a.name == name), None)


def _sweep(sweep: Any) -> Sweep | None:
    if not sweep:
        return None
    profile = tuple(Block(float(p["t_center"]), _metrics(p.get("metrics")))
                    for p in sweep.get("profile") or [])
    peak = sweep.get("peak")
    return Sweep(int(sweep["block_steps"]), sweep.get("base", "conditional"), profile,
                 _peak(peak) if peak else None)


def _peak(peak: Mapping[str, Any]) -> Peak:
    steps = peak.get("steps")
    return Peak(peak.get("metric"), number(peak.get("t")), interval(peak.get("ci95")),
                tuple(steps) if isinstance(steps, list) and len(steps) == 2 else None, number(peak.get("share")))


def view(doc: Mapping[str, Any], fallback_id: str = "?") -> AnalyzeView | GuideView:
    """The view of a validated analyze or guide document (``report.document.result_kind`` tells which)."""
    if doc.get("kind") == KIND_GUIDE:
        return GuideView.from_document(doc, fallback_id)
    return AnalyzeView.from_document(doc, fallback_id)
