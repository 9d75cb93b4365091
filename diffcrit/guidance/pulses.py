"""Classifier-free guidance pulses: guidance only while the step's t lies in a window.

Notation (Ho & Salimans 2022; docs/design.md §2):
    eps_c = eps(x_t, c), eps_u = eps(x_t, null)   raw model outputs on the model's own x_t
    eps   = eps_u + S (eps_c - eps_u)             S = guidance scale, applied in-window only
    t     = log(1 + sigma^2) of the step; step i is in window [a, b] when a <= t_i <= b.
Outside its window a sample runs on its base: conditionally (BASE_CONDITIONAL, eps = eps_c, no unconditional
pass) or unconditionally (BASE_UNCONDITIONAL, eps = eps_u: the null class); inside, an unconditional base gets the
class label at S = 1 (eps = eps_c) or CFG at S > 1 (DESIGN §10: only then can the window's timing show).

Steps are scheduler steps (``step_t_grid``): a Heun-type scheduler's step evaluates the model twice, and
both evaluations share one decision, taken at t_i of the step's first evaluation; windows, random step
blocks and guided-step counts are all in steps. One-evaluation schedulers: a step is an evaluation.

How pulses hook in: the sampler is the model's own (``sampling/loop.py`` over its scheduler as its
pipeline runs it, per-sample generators seed + i) with the model's own denoiser. The per-step
conditioning dict carries each sample's scale and null label under ``cond.GUIDANCE``, so one
``model_output`` call does one forward over [x; x[guided]] with labels [c; null]. Family
specifics (null id, real classes) come from the model's family (``families.py``).

Arms (every arm uses the same per-sample seeds and target classes: a paired design):
    critical  window of width W centred on t_c (``--critical-from`` or measured by ``analyze``)
    a:b       an explicit window in t
    random    per sample, a window of the treatment's width drawn uniformly over the sampled t
              range among the placements that do not overlap the treatment window; drawn from
              numpy generators seeded (RANDOM_WINDOW_STREAM, seed + i), apart from the sampling noise
    random-steps  per sample, a block of as many consecutive steps as the treatment guides, drawn
              uniformly among the blocks that share no step with it (RANDOM_STEPS_STREAM, seed + i).
              Steps are not uniform in t, so a random window of equal width can guide far fewer
              (or more) steps than the treatment; this arm holds the amount of guidance fixed.
    none      no guidance;   all  guidance at every step (= diffusers' DiTPipeline)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import UserError
from .config import (ARM_ALL, ARM_CRITICAL, ARM_NONE, ARM_RANDOM, ARM_RANDOM_STEPS, BASE_CONDITIONAL,  # noqa: F401
                     BASE_UNCONDITIONAL, BASES, DEFAULT_COMPARE, NAMED_ARMS, RANDOM_ARMS, parse_arm)
from ..models.families import ClassGuidance, NOT_CLASS_CONDITIONAL, family_guidance
from ..models.loading import LoadedModel
from ..progress import GUIDE, Callback, ProgressEvent, ignore
from ..sampling.loop import Trajectories
from ..sampling.steppers import StepInfo, make_stepper, scheduler_steps

RANDOM_WINDOW_STREAM = 0x57A1  # numpy seed entropy of the random-window draws (not the sampling noise)
RANDOM_STEPS_STREAM = 0x57A2  # ... and of the random step blocks


def class_guidance(loaded: LoadedModel) -> ClassGuidance:
    """The guidance specifics of a loaded model (its family's null class, ``families.py``); a user error for
    models without class labels."""
    module = loaded.module
    family = getattr(loaded.denoiser, "family", None)  # diffusers models only
    name = type(module).__name__ if module is not None else None
    hint = f"{loaded.info.get('id')} is {name or loaded.info.get('class') or 'a callable'}"
    if family is None:
        raise UserError(NOT_CLASS_CONDITIONAL, hint)
    return family_guidance(family, module, loaded.root, hint)


# --------------------------------------------------------------------------------------------
# Arms and windows (t = log(1 + sigma^2); windows are (N, 2) arrays of [lo, hi], lo > hi = never)


def step_t_grid(infos: list[StepInfo]) -> np.ndarray:
    """(S,) t of each scheduler step, its first recorded evaluation's: the t at which a pulse decides for the
    whole step (``scheduler_steps``)."""
    first: dict[int, float] = {}
    for step, info in zip(scheduler_steps(infos), infos, strict=True):
        first.setdefault(step, info.t)
    return np.array(list(first.values()))


@dataclass
class Arm:
    name: str
    windows: np.ndarray  # (N, 2) float64

    def guided(self, t: float) -> np.ndarray:
        """(N,) bool: which samples get guidance at a step with this t."""
        return (self.windows[:, 0] <= t) & (t <= self.windows[:, 1])

    def guided_steps(self, t_grid: np.ndarray) -> np.ndarray:
        """(N,) number of guided steps per sample."""
        return ((self.windows[:, :1] <= t_grid[None]) & (t_grid[None] <= self.windows[:, 1:])).sum(axis=1)

    def describe(self, t_range: tuple[float, float]) -> list[list[float]]:
        """Windows for the JSON: [] (none), one [lo, hi] (shared) or one per sample, clipped to the range."""
        rows = np.unique(self.windows, axis=0)
        if len(rows) == 1 and rows[0, 0] > rows[0, 1]:
            return []
        source = rows if len(rows) == 1 else self.windows
        return [[float(max(lo, t_range[0])), float(min(hi, t_range[1]))] for lo, hi in source]


def arm_names(at: str, compare: list[str] | None) -> list[str]:
    """Treatment first, then the compared arms (defaults: random, random-steps, none, all, where they apply)."""
    window_treatment = at == ARM_CRITICAL or parse_arm(at) is not None
    if compare is None:
        compare = [a for a in DEFAULT_COMPARE if a != at and (a not in RANDOM_ARMS or window_treatment)]
    elif set(RANDOM_ARMS) & set(compare) and not window_treatment:
        raise UserError(f"random windows are drawn relative to a window arm, and --at {at} is none",
                        "use --at critical or --at a:b with --compare random")
    names = [at] + [a for a in compare if a != at]
    return list(dict.fromkeys(names))


def fixed_window(name: str, t_c: float | None, width: float) -> tuple[float, float]:
    if name == ARM_ALL:
        return -math.inf, math.inf
    if name == ARM_NONE:
        return math.inf, -math.inf
    if name == ARM_CRITICAL:
        return t_c - width / 2, t_c + width / 2
    return parse_arm(name)


def check_window(name: str, window: tuple[float, float], t_grid: np.ndarray) -> None:
    """A window arm must overlap the sampled range and hold at least one step."""
    lo, hi = window
    t_min, t_max = float(t_grid.min()), float(t_grid.max())
    if hi < t_min or lo > t_max:
        raise UserError(f"the {name} window [{lo:.4g}, {hi:.4g}] lies outside the sampled range t in "
                        f"[{t_min:.4g}, {t_max:.4g}]", "pick a window inside it (or check --steps/--scheduler)")
    if not np.any((t_grid >= lo) & (t_grid <= hi)):
        raise UserError(f"the {name} window [{lo:.4g}, {hi:.4g}] holds no sampling step",
                        "widen it or use more --steps")


def random_windows(n: int, width: float, exclude: tuple[float, float], t_range: tuple[float, float],
                   seed: int) -> np.ndarray:
    """(n, 2) windows [a, a + width] with a uniform over the placements inside ``t_range`` that do
    not overlap ``exclude``; sample i draws from numpy's generator seeded (RANDOM_WINDOW_STREAM, seed + i)."""
    t_min, t_max = t_range
    pieces = [(t_min, exclude[0] - width), (exclude[1], t_max - width)]
    pieces = [(a, b) for a, b in pieces if b > a]
    lengths = np.array([b - a for a, b in pieces])
    if not pieces:
        raise UserError(f"no window of width {width:.3g} fits in t in [{t_min:.4g}, {t_max:.4g}] beside the "
                        f"treatment window [{exclude[0]:.4g}, {exclude[1]:.4g}]",
                        f"use a narrower --window-width, or leave {ARM_RANDOM} out of --compare")
    out = np.empty((n, 2))
    for i in range(n):
        u = np.random.default_rng([RANDOM_WINDOW_STREAM, seed + i]).uniform(0, lengths.sum())
        k = 0 if u < lengths[0] else len(pieces) - 1
        a = pieces[k][0] + u - lengths[:k].sum()
        out[i] = (a, a + width)
    return out


def random_step_windows(n: int, treatment: tuple[float, float], t_grid: np.ndarray, seed: int) -> np.ndarray:
    """(n, 2) windows each holding a block of consecutive steps as long as the treatment's, sharing
    no step with it; sample i draws the block from numpy's generator seeded (RANDOM_STEPS_STREAM, seed + i)."""
    inside = (t_grid >= treatment[0]) & (t_grid <= treatment[1])
    m = int(inside.sum())
    starts = [j for j in range(len(t_grid) - m + 1) if not inside[j: j + m].any()]
    if m == 0 or not starts:
        raise UserError(f"no block of {m} steps fits beside the treatment's {m} steps in a grid of {len(t_grid)}",
                        f"use a narrower --window-width or more --steps, or leave {ARM_RANDOM_STEPS} out of --compare")
    out = np.empty((n, 2))
    for i in range(n):
        j = starts[int(np.random.default_rng([RANDOM_STEPS_STREAM, seed + i]).integers(len(starts)))]
        block = t_grid[j: j + m]
        out[i] = (block.min(), block.max())
    return out


def build_arms(names: list[str], n: int, t_grid: np.ndarray, t_c: float | None, width: float, seed: int,
               optional: tuple[str, ...] = ()) -> list[Arm]:
    """Arms in order; the first is the treatment (random windows avoid its window and share its width).

    An arm named in ``optional`` (a default control, not asked for) is left out where it cannot be
    drawn: e.g. random-steps, when the treatment guides so many steps that no block as long fits beside them.
    """
    treatment = fixed_window(names[0], t_c, width)
    arms = []
    for name in names:
        try:
            arms.append(Arm(name, _arm_windows(name, n, t_grid, t_c, width, seed, treatment)))
        except UserError:
            if name not in optional:
                raise
    return arms


def _arm_windows(name: str, n: int, t_grid: np.ndarray, t_c: float | None, width: float, seed: int,
                 treatment: tuple[float, float]) -> np.ndarray:
    """(n, 2) windows of one arm."""
    if name == ARM_RANDOM:
        t_range = (float(t_grid.min()), float(t_grid.max()))
        return random_windows(n, treatment[1] - treatment[0], treatment, t_range, seed)
    if name == ARM_RANDOM_STEPS:
        return random_step_windows(n, treatment, t_grid, seed)
    window = fixed_window(name, t_c, width)
    if name not in (ARM_ALL, ARM_NONE):
        check_window(name, window, t_grid)
    return np.tile(np.array(window, dtype=float), (n, 1))


def sweep_blocks(n_steps: int, block_steps: int) -> list[tuple[int, int]]:
    """Blocks [a, b] of ``block_steps`` consecutive scheduler steps tiling 0..n_steps - 1 (stride K); where K does
    not divide the step count, a last block ends at the last step (overlapping the one before), so every block holds
    exactly K steps."""
    k = block_steps
    if not 1 <= k <= n_steps:
        raise UserError(f"a sweep block of {k} steps does not fit in {n_steps} steps", f"give 1 <= K <= {n_steps}")
    starts = list(range(0, n_steps - k + 1, k))
    if starts[-1] + k < n_steps:
        starts.append(n_steps - k)
    return [(a, a + k - 1) for a in starts]


def block_arm_name(block: tuple[int, int]) -> str:
    return f"steps {block[0]}-{block[1]}"


def sweep_arms(t_grid: np.ndarray, block_steps: int, n: int) -> list[Arm]:
    """One arm per block of ``sweep_blocks`` (every sample guided on the block's steps: the window spans the
    block's t, which holds no other step since t is monotone over steps), then ``none`` and ``all``."""
    arms = []
    for a, b in sweep_blocks(len(t_grid), block_steps):
        block = t_grid[a: b + 1]
        arms.append(Arm(block_arm_name((a, b)), np.tile([float(block.min()), float(block.max())], (n, 1))))
    return arms + [Arm(name, np.tile(np.array(fixed_window(name, None, 0.0)), (n, 1))) for name in (ARM_NONE, ARM_ALL)]


# --------------------------------------------------------------------------------------------
# Sampling one arm


def step_conditioning(guidance: ClassGuidance, labels: torch.Tensor, in_window: torch.Tensor, scale: float,
                      base: str = BASE_CONDITIONAL) -> dict:
    """The conditioning of one step for samples of class ``labels`` (B,), ``in_window`` (B,) bool: scale S inside
    the window, 1 outside; outside, the class (conditional base) or the null class (unconditional base)."""
    if base not in BASES:
        raise UserError(f"base must be one of {', '.join(BASES)}, got {base!r}")
    in_window = in_window.to(labels.device)
    if base == BASE_UNCONDITIONAL:
        labels = torch.where(in_window, labels, guidance.null_labels(len(labels), labels.device))
    return guidance.conditioning(labels, torch.where(in_window, scale, 1.0).to(labels.device))


def sample_arm(loaded: LoadedModel, guidance: ClassGuidance, arm: Arm, targets: torch.Tensor, scale: float,
               steps: int, seed: int, batch_size: int, callback: Callback = ignore,
               mine: range | None = None, base: str = BASE_CONDITIONAL) -> torch.Tensor:
    """Final samples (len(mine), C, H, W) in the model's own space, guided per ``arm`` on ``base``.

    ``mine`` are the global sample indices to draw (default: all); sample i is seeded seed + i and
    uses row i of the arm's windows and of ``targets``, so a split over processes changes nothing.
    """
    mine = range(len(targets)) if mine is None else mine
    labels = targets[list(mine)].to(loaded.device)

    def conditioning(i: int, rows: list[int]) -> dict:
        in_window = torch.from_numpy(arm.guided(t_grid[step_of[i]])[[mine[j] for j in rows]])  # per scheduler step
        return step_conditioning(guidance, labels[rows], in_window, scale, base)

    run = Trajectories(lambda: make_stepper(loaded, steps), loaded.shape, [seed + i for i in mine], batch_size,
                       conditioning, half_precision=loaded.half_precision, where=f" of arm {arm.name}")
    step_of, t_grid = scheduler_steps(run.infos), step_t_grid(run.infos)
    for step in run.steps():
        callback(ProgressEvent(GUIDE, (step.index + 1) * len(mine), len(mine) * len(run.infos), label=arm.name,
                               sigma=step.info.sigma, t=step.info.t))
    return run.final()
