"""Typed defaults of ``analyze`` in one place, with each option's range or choices declared on its field (``ranged``,
``one_of``): ``validate`` checks them and the CLI's options take them (``allowed``), so neither is written twice.

The resolved config goes into every output (``Result.to_dict()['config']``), and
``analyze(model, **config)`` reproduces a run from it.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

from .errors import UserError

PROBE_METHODS = ("auto", "jvp", "fd")
LINEARIZE_AT = ("trajectory", "zero")
PROBE_SCHEDULES = ("auto", "every")  # which steps are probed: schedule.py
SHELL_GAINS = ("hutchinson", "directions")  # one random-sign combination per shell, or every direction: hutchinson.py
# probe_samples None: this share of the samples (at least PROBE_SAMPLES_MIN), so the instability fraction has an
# interval (docs/design.md §5): 16 probe trajectories of the default 128 samples
PROBE_SHARE = 8
PROBE_SAMPLES_MIN = 2
DEVICES = ("auto", "cpu", "cuda", "cuda:N", "mps")  # cuda: the current CUDA device; cuda:N the N-th
DTYPES = ("float32", "float16", "bfloat16")
MAX_STEPS = 1_000_000  # far beyond any schedule; a diffusers scheduler sets its own bound (num_train_timesteps)
SEED_END = 2**63  # seeds seed .. seed + samples - 1 seed torch's CPU generators (int64)
# Smallest relative finite-difference step: float32 resolves ~1.2e-7 relative, so below ~1e-5 J v measures round-off
# (builtin:mixture?size=8, 8 steps: |s_fd - s_jvp| = 2e-4 at 1e-4, 6e-3 at 1e-5, 0.4 at 1e-7).
FD_STEP_MIN = 1e-5


def ranged(default: Any, low: int | float | None = None, high: int | float | None = None) -> Any:
    """A config field whose value lies in [low, high] (None: unbounded; a float bound: a finite number), declared once:
    ``validate`` checks it and the CLI's option takes it as its range (``allowed``)."""
    return field(default=default, metadata={"min": low, "max": high})


def one_of(default: str, choices: tuple[str, ...]) -> Any:
    """A config field whose value is one of ``choices``, declared once: ``validate`` checks it and the CLI's option
    offers them (``allowed``)."""
    return field(default=default, metadata={"choices": choices})


def redefault(config: type, name: str, default: Any) -> Any:
    """``config``'s field ``name`` with another default, its declared range or choices kept (a subclass's field)."""
    return field(default=default, metadata=_fields(config)[name].metadata)


@dataclass
class SamplingConfig:
    """Which samples, how many steps, in which batches (sample i draws all its noise from seed + i)."""

    steps: int = ranged(50, 2, MAX_STEPS)
    # 128: over 6 disjoint ranges the decision marker moved by std 0.13 in t on builtin:digits (0.20 at 64;
    # bench/results/calibration.json) and 0.09 on builtin:textures at 64 (0.15 at 16)
    samples: int = ranged(128, 1)
    seed: int = ranged(0, 0)  # and seed + samples - 1 below SEED_END (check_seeds)
    batch_size: int = ranged(64, 1)

    def _check_sampling(self) -> None:
        check_seeds(self.seed, self.samples)


@dataclass
class KarrasConfig:
    """The sampler of callable and analytic models: Euler on the Karras et al. (2022) schedule."""

    sigma_min: float = 0.002
    sigma_max: float = 80.0
    rho: float = 7.0
    churn: float = ranged(0.0, 0.0)

    @property
    def karras(self) -> dict[str, float]:
        """The schedule's settings as ``sampling.steppers.make_stepper`` takes them."""
        return {"sigma_min": self.sigma_min, "sigma_max": self.sigma_max, "rho": self.rho, "churn": self.churn}

    def _check_karras(self) -> None:
        check_karras(self.sigma_min, self.sigma_max, self.rho)


@dataclass
class ModelConfig:
    """What loading a model needs beyond its name: where, in which precision, its scheduler, its image size."""

    device: str = "auto"
    dtype: str = one_of("float32", DTYPES)
    scheduler: str | None = None
    prediction_type: str | None = None
    height: int | None = ranged(None, 1)  # pixels; transformer pipelines only (None: the pipeline's default)
    width: int | None = ranged(None, 1)

    def _check_model(self) -> None:
        check_device(self.device)


@dataclass
class ConditioningConfig:
    """What a conditional model is conditioned on at every step, and classifier-free guidance at every step."""

    class_label: int | None = None
    prompt: str | None = None
    prompt_embeds: str | None = None  # safetensors of the pipeline's encode_prompt outputs (instead of --prompt)
    # classifier-free guidance at every step, as the pipelines apply it (1: none; the pipelines guide only above 1)
    guidance_scale: float = ranged(1.0, 1.0)
    negative_prompt: str | None = None  # CFG's unconditional branch (None: the pipeline's default)

    @property
    def guided(self) -> bool:
        """Classifier-free guidance at every step (``guidance_scale`` above 1)."""
        return self.guidance_scale > 1

    def _check_conditioning(self) -> None:
        if self.negative_prompt is not None and not self.guided:
            raise UserError("`negative_prompt` is the unconditional branch of classifier-free guidance",
                            "set `guidance_scale` above 1 with it", option="negative_prompt")


@dataclass
class ProbingConfig:
    """Which modes are probed, at which points, how J v is computed and on which steps (docs/design.md §3)."""

    shells: int = ranged(4, 2)
    directions: int = ranged(2, 1)
    # None: max(PROBE_SAMPLES_MIN, samples // PROBE_SHARE), resolved in validate
    probe_samples: int | None = ranged(None, 1)
    shell_gain: str = one_of("hutchinson", SHELL_GAINS)
    probe: str = one_of("auto", PROBE_METHODS)
    linearize_at: str = one_of("trajectory", LINEARIZE_AT)
    fd_step: float = ranged(5e-3, FD_STEP_MIN)  # and below 1 (_check_probing)
    probe_batch: int = ranged(256, 1)
    probe_every: int = ranged(1, 1)
    probe_schedule: str = one_of("auto", PROBE_SCHEDULES)

    def _check_probing(self) -> None:
        if not self.fd_step < 1:
            raise UserError(f"`fd_step` must be in [{FD_STEP_MIN:g}, 1), got {self.fd_step}",
                            "below that float32 round-off swamps the finite difference; `probe` jvp is exact",
                            option="fd_step")


@dataclass
class DetectionConfig:
    """The markers' bootstrap, the decision shell and the clones that measure decisions directly (docs/design.md §6)."""

    bootstrap: int = ranged(200, 0)
    decision_shell: int | None = ranged(None, 0)  # None: the lowest varying shell with >= 4 bins (docs/design.md §6)
    clones: int = ranged(0, 0)  # branch steps with two stochastic clones per sample (clones.py); 0: none
    # scores the clones' and the trunk's final samples (class_decision.py): a classifier path or "builtin"
    classifier: str | None = None

    def _check_detection(self) -> None:
        if self.classifier is not None:
            self.classifier = str(self.classifier)  # a path or "builtin"; a str in the JSON config
        if self.classifier is not None and self.clones == 0:
            raise UserError("`classifier` scores the clones' final samples, but no clones are made",
                            "set `clones` to G branch steps (e.g. 8), or drop `classifier`", option="classifier")


@dataclass
class AnalyzeConfig(DetectionConfig, ProbingConfig, ConditioningConfig, ModelConfig, KarrasConfig, SamplingConfig):
    """Every option of ``analyze``: its typed parts combined (fields flat, as the JSON ``config`` holds them)."""

    def validate(self) -> "AnalyzeConfig":
        """Reject out-of-range values with one line naming the option and what is allowed."""
        check_declared(self)
        self._check_sampling()
        self._check_karras()
        self._check_model()
        self._check_conditioning()
        self._check_probing()
        self._check_detection()
        if self.decision_shell is not None and self.decision_shell >= self.shells:
            raise UserError(f"`decision_shell` must be below `shells` ({self.shells}), got {self.decision_shell}",
                            option="decision_shell")
        if self.probe_samples is None:
            self.probe_samples = max(PROBE_SAMPLES_MIN, self.samples // PROBE_SHARE)
        self.probe_samples = min(self.probe_samples, self.samples)
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def part(config: Any, kind: type):
    """The fields of ``config`` that belong to the part ``kind`` (e.g. ``ModelConfig``), as that part."""
    return kind(**{f.name: getattr(config, f.name) for f in dataclasses.fields(kind)})


def build_config(cls: type, options: dict[str, Any]):
    """``cls(**options).validate()``; an unknown option is a user error listing the known ones."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise UserError(f"unknown option(s) {', '.join(unknown)}", f"known: {', '.join(sorted(known))}")
    return cls(**options).validate()


def make_config(**options: Any) -> AnalyzeConfig:
    """A validated ``AnalyzeConfig``."""
    return build_config(AnalyzeConfig, options)


def allowed(config: Any, name: str) -> Mapping[str, Any]:
    """What ``config`` (a config class or instance) declares its field ``name`` may hold: ``{"min", "max"}`` (a bound
    None: none) or ``{"choices"}``; empty when it declares nothing."""
    return _fields(config)[name].metadata


def check_declared(config: Any) -> None:
    """Every field of ``config`` within its declared range or choices (``allowed``); None passes where it is the
    field's default."""
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if not (value is None and f.default is None):
            check_allowed(f.name, value, f.metadata)


def check_allowed(name: str, value: Any, declared: Mapping[str, Any]) -> None:
    """``value`` of the parameter ``name`` within ``declared`` (``allowed``'s mapping), or a one-line user error."""
    if "choices" in declared:
        _one_of(name, value, declared["choices"])
    if declared.get("min") is not None:
        at_least(name, value, declared["min"])
    if declared.get("max") is not None:
        at_most(name, value, declared["max"])


def at_least(name: str, value: Any, low: int | float) -> None:
    """An integer >= ``low``, or for a float ``low`` a finite number >= it."""
    if isinstance(low, float):
        number = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if not number or value < low:
            raise UserError(f"`{name}` must be a finite number >= {low:g}, got {value!r}", option=name)
    elif not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise UserError(f"`{name}` must be an integer >= {low}, got {value!r}", option=name)


def at_most(name: str, value: Any, high: int | float) -> None:
    if value > high:
        raise UserError(f"`{name}` must be {'a number' if isinstance(high, float) else 'an integer'} <= {high:,}, "
                        f"got {value!r}", option=name)


def check_seeds(seed: int, count: int) -> None:
    """Seeds ``seed .. seed + count - 1`` must fit torch's generators (below 2**63)."""
    if seed + count > SEED_END:
        raise UserError(f"`seed` must be at most 2**63 - {count} (seed + i seeds sample i < {count}), got {seed}",
                        option="seed")


def check_karras(sigma_min: float, sigma_max: float, rho: float) -> None:
    """The Karras et al. (2022) schedule's range and rho: finite, 0 < sigma_min < sigma_max, rho > 0."""
    if not 0 < sigma_min < sigma_max < math.inf:
        raise UserError(f"need 0 < `sigma_min` < `sigma_max` < inf, got {sigma_min} and {sigma_max}",
                        option="sigma_min" if not 0 < sigma_min < math.inf else "sigma_max")
    if not 0 < rho < math.inf:
        raise UserError(f"need a finite `rho` > 0, got {rho}", option="rho")


def check_device(name: Any) -> None:
    """``device`` names one of ``DEVICES`` (N a device index: cuda:0, cuda:1, ...); whether it exists is checked
    where the model is placed (``models.loading.resolve_device``)."""
    index = name[len("cuda:"):] if isinstance(name, str) and name.startswith("cuda:") else None
    if name not in ("auto", "cpu", "cuda", "mps") and not (index is not None and index.isdigit()):
        raise UserError(f"`device` must be one of {', '.join(DEVICES)}, got {name!r}", option="device")


def _one_of(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise UserError(f"`{name}` must be one of {', '.join(choices)}, got {value!r}", option=name)


def _fields(config: Any) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(config)}
