"""Typed defaults of ``guide`` and the vocabulary of its arms (torch-free: the CLI reads its defaults from here).

Arms: ``critical`` (a window of width W centred on t_c), ``a:b`` (a window in t), ``random`` / ``random-steps``
(controls: a window of equal width in t / a block of as many steps, placed at random), ``none``, ``all``
(guidance/pulses.py). The base is what a sample runs on outside its window (docs/design.md §11).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from ..config import (AnalyzeConfig, ModelConfig, SamplingConfig, build_config, check_declared, check_seeds, one_of,
                      ranged, redefault)
from ..errors import UserError

ARM_CRITICAL, ARM_RANDOM, ARM_RANDOM_STEPS, ARM_NONE, ARM_ALL = "critical", "random", "random-steps", "none", "all"
NAMED_ARMS = (ARM_CRITICAL, ARM_RANDOM, ARM_RANDOM_STEPS, ARM_NONE, ARM_ALL)
RANDOM_ARMS = (ARM_RANDOM, ARM_RANDOM_STEPS)
DEFAULT_COMPARE = (ARM_RANDOM, ARM_RANDOM_STEPS, ARM_NONE, ARM_ALL)
BASE_CONDITIONAL, BASE_UNCONDITIONAL = "conditional", "unconditional"  # what a sample runs on outside its window
BASES = (BASE_CONDITIONAL, BASE_UNCONDITIONAL)


def parse_arm(name: str, treatment: bool = False) -> tuple[float, float] | None:
    """A named arm -> None, or ``a:b`` -> (a, b) in t. Unknown, empty or inverted: user error."""
    if name in NAMED_ARMS:
        if treatment and name in RANDOM_ARMS:
            raise UserError(f"`at` {name} is not a treatment",
                            "random windows are the control; use `at` critical or a:b", option="at")
        return None
    lo, sep, hi = name.partition(":")
    try:
        if not sep:
            raise ValueError
        a, b = float(lo), float(hi)
    except ValueError:
        raise UserError(f"unknown arm {name!r}",
                        f"allowed: {', '.join(NAMED_ARMS)} or a window a:b in t (e.g. 2.1:3.4)") from None
    if not (math.isfinite(a) and math.isfinite(b)):
        raise UserError(f"window {name!r} is not finite", "give a:b with finite t values")
    if b < a:
        raise UserError(f"window {name!r} is inverted (a > b)", f"write it as {hi}:{lo}")
    if b == a:
        raise UserError(f"window {name!r} is empty (a = b)", "give a:b with a < b")
    return a, b


@dataclass
class GuidanceConfig:
    """The pulse experiment: the treatment and control arms, the base outside the window, the scale and width, the
    target classes, the sweep, the samples that measure t_c, the bootstrap of the comparisons."""

    at: str = ARM_CRITICAL
    compare: list[str] | None = None  # None -> DEFAULT_COMPARE, less the treatment and impossible arms
    base: str = one_of(BASE_CONDITIONAL, BASES)  # outside the window: the class, or the null class (unconditional)
    # >= 1, and > 1 on a conditional base (_check_guidance); 1 on an unconditional base: the class label alone
    guidance_scale: float = ranged(3.0, 1.0)
    window_width: float = 1.0  # in t
    class_label: int | None = None
    classes: list[int] | None = None
    # K: blocks of K consecutive steps across the schedule, plus none and all
    sweep: int | None = ranged(None, 1)
    analyze_samples: int = redefault(AnalyzeConfig, "samples", AnalyzeConfig.samples)  # as analyze's
    bootstrap: int = ranged(2000, 0)

    def _check_guidance(self) -> None:
        if self.base == BASE_CONDITIONAL and self.guidance_scale == 1:  # S = 1 on an unconditional base: the label
            raise UserError("`guidance_scale` must be > 1 on a conditional base, got 1",
                            "S = 1 is the `none` arm on a conditional base", option="guidance_scale")
        if not 0 < self.window_width < math.inf:
            raise UserError(f"`window_width` must be finite and > 0 (in t), got {self.window_width}",
                            option="window_width")
        if self.class_label is not None and self.classes:
            raise UserError("give `class_label` or `classes`, not both", option="classes")
        if self.sweep is not None:
            if self.at != ARM_CRITICAL or self.compare is not None:
                raise UserError("`sweep` runs its own arms (every block, none and all)", "drop `at` and `compare`",
                                option="sweep")
        parse_arm(self.at, treatment=True)
        for name in self.compare or []:
            parse_arm(name)


@dataclass
class GuideConfig(GuidanceConfig, ModelConfig, SamplingConfig):
    """Every option of ``guide``: its typed parts combined; the resolved copy goes into the JSON."""

    samples: int = redefault(SamplingConfig, "samples", 64)  # per arm: every arm samples them all

    def validate(self) -> "GuideConfig":
        check_declared(self)
        self._check_sampling()
        self._check_model()
        self._check_guidance()
        check_seeds(self.seed, max(self.samples, self.analyze_samples))
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


OLD_NAMES = {"scale": "guidance_scale", "width": "window_width"}  # names before 0.2, still accepted


def make_guide_config(**options: Any) -> GuideConfig:
    """A validated ``GuideConfig``; ``scale`` and ``width`` (the names before 0.2) are read as guidance_scale and
    window_width."""
    for old, new in OLD_NAMES.items():
        if old in options:
            if new in options:
                raise UserError(f"`{old}` is the old name of `{new}`: give one of them", option=old)
            options[new] = options.pop(old)
    return build_config(GuideConfig, options)
