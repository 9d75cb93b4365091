"""Samplers that expose every step's (y, D(y)) in the VE frame (docs/design.md §2, §7).

A stepper owns one batch of samples and advances it one step at a time:

    x = stepper.init(noise)                      # model's own state
    y, denoised, x = stepper.step(x, i, cond, generators)   # y, D: (B, C, H, W) float32, VE frame
    samples = stepper.final(x)                   # model's own space, before any decoding

``SchedulerStepper`` follows a diffusers scheduler exactly as its pipeline does (same input
scaling, same ``scheduler.step`` call with the per-sample generators), so the final samples equal
the pipeline's; which frame its sample is in comes from ``schedulers.py``. ``KarrasEulerStepper``
samples a bare ``denoise(y, sigma)`` with Euler on the Karras et al. (2022) schedule (their
Algorithm 2 with optional churn).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from itertools import accumulate
from typing import Any, Callable

import torch

from ..models.denoisers import DiffusersDenoiser
from ..errors import ModelOutputError, UserError, shorten
from ..frame import karras_sigmas, sigma_to_t
from ..models.schedulers import (FIRST, SECOND, evaluations, family_of, init_noise_sigma, scale_model_input,
                                 step_kwargs)

@dataclass(frozen=True)
class StepInfo:
    """Where step ``index`` sits in the one frame: sigma (VE), t = log(1 + sigma^2), the model's timestep;
    ``evaluation`` "first"/"second" for schedulers that evaluate the model twice per step (else None)."""

    index: int
    sigma: float
    timestep: float | None
    evaluation: str | None = None

    @property
    def t(self) -> float:
        return sigma_to_t(self.sigma)


def scheduler_steps(infos: list[StepInfo]) -> list[int]:
    """(E,) the scheduler step of each recorded evaluation, from 0: a "second" evaluation belongs to the step of
    the one before it, every other evaluation starts a step (a leading "second", whose first evaluation ran on
    pure noise unrecorded, starts step 0). One-evaluation schedulers: step i is evaluation i."""
    starts = [int(k == 0 or info.evaluation != SECOND) for k, info in enumerate(infos)]
    return [n - 1 for n in accumulate(starts)]


def nonfinite_output_error(info: StepInfo, half_precision: bool, where: str = "") -> ModelOutputError:
    """The one-line error for NaN or Inf in a model's output at a step, naming the step (``where``: e.g. the arm)."""
    hint = "try --dtype float32 or another scheduler" if half_precision else \
        "check the model's weights (a float32 run), or try another scheduler"
    return ModelOutputError(f"the model produced NaN or Inf at step {info.index}{where} (sigma={info.sigma:.4g}, "
                            f"timestep={info.timestep})", hint)


def per_sample_noise(shape: tuple[int, ...], generators: list[torch.Generator]) -> torch.Tensor:
    """Initial noise (B, C, H, W) on the CPU: sample i drawn from its own CPU generator, as pipelines draw it."""
    from diffusers.utils.torch_utils import randn_tensor

    return randn_tensor((len(generators), *shape), generator=list(generators))


@dataclass
class Schedule:
    """A scheduler set for ``steps`` as the model's pipeline sets it, read without a model: the recorded evaluations
    (``infos``) and ``hidden``, the number of leading pure-noise evaluations (diffusers' loop indices of recorded
    evaluation k is hidden + k)."""

    scheduler: Any
    infos: list[StepInfo]
    hidden: int
    sigmas: list[float]  # VE sigma of every evaluation, the hidden pure-noise ones too (inf)


def schedule(scheduler: Any, steps: int, set_timesteps: Callable[[Any, int], None] | None = None) -> Schedule:
    """A copy of ``scheduler`` set for ``steps`` (``set_timesteps``: as the model's pipeline sets them) and its
    evaluations; fewer than two at finite sigma is a user error."""
    family = family_of(scheduler)
    scheduler = copy.deepcopy(scheduler)  # schedulers are stateful: one per batch
    try:
        if set_timesteps is None:
            scheduler.set_timesteps(steps)
        else:  # as the model's pipeline sets them (e.g. Flux's resolution-dependent shift)
            set_timesteps(scheduler, steps)
    except ValueError as err:
        name, most = type(scheduler).__name__, getattr(scheduler.config, "num_train_timesteps", None)
        if most is not None and steps > most:
            raise UserError(f"{name} takes at most {most} steps (its num_train_timesteps), got --steps {steps}",
                            f"use --steps {most} or fewer") from None
        raise UserError(f"{name} cannot take {steps} steps: {shorten(str(err), 120)}", "try other --steps") from None
    evals = evaluations(family, scheduler)
    hidden = next((j for j, e in enumerate(evals) if e.recorded), len(evals))
    if not all(e.recorded for e in evals[hidden:]) or len(evals) - hidden < 2:
        raise UserError(f"{type(scheduler).__name__} at {steps} steps gives {len(evals) - hidden} "
                        "evaluation(s) at finite sigma after the pure-noise ones", "use more --steps")
    return Schedule(scheduler, [StepInfo(i, e.sigma, e.timestep, e.order) for i, e in enumerate(evals[hidden:])],
                    hidden, [e.sigma for e in evals])


class SchedulerStepper:
    """One batch sampled by a diffusers scheduler, as the model's own pipeline does it.

    Every entry of ``scheduler.timesteps`` is one model evaluation and one step record (Heun-type
    schedulers: two per scheduler step, labelled by ``StepInfo.evaluation``), at the sigma the model
    is evaluated at. Leading evaluations on pure noise (flow matching at s = 1: infinite sigma, y
    undefined) are run at the start of step 0 and not recorded.
    """

    def __init__(self, scheduler: Any, denoiser: DiffusersDenoiser, steps: int,
                 set_timesteps: Callable[[Any, int], None] | None = None):
        self.family = family_of(scheduler)
        plan = schedule(scheduler, steps, set_timesteps)
        self.scheduler, self.infos, self.hidden = plan.scheduler, plan.infos, plan.hidden
        self.denoiser = denoiser
        self.timesteps = self.scheduler.timesteps
        self.sigmas = plan.sigmas  # of every evaluation, the hidden pure-noise ones too (inf)

    def init(self, noise: torch.Tensor) -> torch.Tensor:
        return noise.to(self.denoiser.device) * init_noise_sigma(self.scheduler)

    def _evaluate(self, x, j, cond, generators):
        """Evaluation j exactly as the pipeline runs it -> (raw model output, next sample)."""
        t = self.timesteps[j]
        output = self.denoiser.model_output(scale_model_input(self.scheduler, x, t), t, cond)
        x_next = self.scheduler.step(output.to(x.dtype), t, x, **step_kwargs(self.scheduler, generators)).prev_sample
        return output, x_next

    def step(self, x, i, cond, generators):
        for j in range(self.hidden if i == 0 else 0):
            _, x = self._evaluate(x, j, cond, generators)
        info = self.infos[i]
        if info.evaluation is not None and self.scheduler.state_in_first_order != (info.evaluation == FIRST):
            raise RuntimeError(f"step {i}: {type(self.scheduler).__name__} is not in its {info.evaluation} evaluation")
        y = self.family.to_y(x, info.sigma)
        output, x_next = self._evaluate(x, self.hidden + i, cond, generators)
        sigma = torch.full((x.shape[0],), info.sigma, device=x.device)
        return y, self.denoiser.denoised(output, y, sigma), x_next

    def final(self, x: torch.Tensor) -> torch.Tensor:
        return x.float()


def churn_gamma(steps: int, churn: float) -> float:
    """Karras et al. (2022) Algorithm 2's gamma_i = min(churn / N, sqrt 2 - 1) (0 without churn)."""
    return min(churn / steps, math.sqrt(2) - 1) if churn > 0 else 0.0


def karras_infos(steps: int, sigma_min: float, sigma_max: float, rho: float, churn: float = 0.0) -> list[StepInfo]:
    """The steps of ``KarrasEulerStepper``: each at the sigma the denoiser is evaluated at (raised by churn)."""
    hat = karras_sigmas(steps, sigma_min, sigma_max, rho) * (1 + churn_gamma(steps, churn))
    return [StepInfo(i, s, s) for i, s in enumerate(hat.tolist())]


class KarrasEulerStepper:
    """Euler on sigma_i = Karras schedule (sigma_max -> sigma_min, rho), then to sigma = 0.

    Deterministic unless ``churn`` > 0, in which case noise is added before each step as in
    Karras et al. (2022) Algorithm 2 (gamma_i = min(churn / N, sqrt 2 - 1)), drawn from the
    per-sample generators. The recorded sigma of a step is the one the denoiser was evaluated at.
    """

    def __init__(self, denoiser, steps: int, sigma_min: float, sigma_max: float, rho: float, churn: float = 0.0,
                 device: torch.device | str = "cpu"):
        self.denoiser = denoiser
        self.device = torch.device(device)
        sigmas = karras_sigmas(steps, sigma_min, sigma_max, rho)
        self.gamma = churn_gamma(steps, churn)
        self.hat = (sigmas * (1 + self.gamma)).tolist()
        self.next = sigmas[1:].tolist() + [0.0]
        self.sigmas = sigmas.tolist()
        self.infos = karras_infos(steps, sigma_min, sigma_max, rho, churn)

    def init(self, noise: torch.Tensor) -> torch.Tensor:
        return noise.to(self.device).float() * self.sigmas[0]

    def step(self, x, i, cond, generators):
        if self.gamma > 0:
            extra = per_sample_noise(tuple(x.shape[1:]), generators).to(x.device)
            x = x + math.sqrt(self.hat[i] ** 2 - self.sigmas[i] ** 2) * extra
        sigma = torch.full((x.shape[0],), self.hat[i], device=x.device)
        denoised = self.denoiser(x, sigma, None, cond).float()
        x_next = x + (self.next[i] - self.hat[i]) * (x - denoised) / self.hat[i]  # dy/dsigma = (y - D)/sigma
        return x, denoised, x_next

    def final(self, x: torch.Tensor) -> torch.Tensor:
        return x.float()


def make_stepper(loaded: Any, steps: int, karras: dict | None = None):
    """A sampler for one batch of ``loaded`` (``models.loading.LoadedModel``): its scheduler as its pipeline runs
    it, or, for a bare denoiser, Euler on the Karras schedule of ``karras`` (sigma_min, sigma_max, rho, churn)."""
    if loaded.scheduler is not None:
        return SchedulerStepper(loaded.scheduler, loaded.denoiser, steps, loaded.set_timesteps)
    if karras is None:
        raise ValueError("a bare denoiser is sampled on the Karras schedule: give karras=(sigma_min, sigma_max, ...)")
    return KarrasEulerStepper(loaded.denoiser, steps, device=loaded.device, **karras)


def step_infos(loaded: Any, steps: int, karras: dict | None = None) -> list[StepInfo]:
    """The recorded steps ``make_stepper`` would take, without building a sampler (a scheduler copy is set)."""
    if loaded.scheduler is not None:
        return schedule(loaded.scheduler, steps, loaded.set_timesteps).infos
    if karras is None:
        raise ValueError("a bare denoiser is sampled on the Karras schedule: give karras=(sigma_min, sigma_max, ...)")
    return karras_infos(steps, **karras)

