"""Samplers that expose every step's (y, D(y)) in the VE frame (docs/design.md §2, §7).

A stepper owns one batch of samples and advances it one step at a time:

    x = stepper.init(noise)                      # model's own state
    y, denoised, x = stepper.step(x, i, cond, generators)   # y, D: (B, C, H, W) float32, VE frame
    samples = stepper.final(x)                   # model's own space, before any decoding

``SchedulerStepper`` follows a diffusers scheduler exactly as its pipeline does (same input
scaling, same ``scheduler.step`` call with the per-sample generators), so the final samples equal
the pipeline's. ``KarrasEulerStepper`` samples a bare ``denoise(y, sigma)`` with Euler on the
Karras et al. (2022) schedule (their Algorithm 2 with optional churn).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import torch

from .denoisers import DiffusersDenoiser, output_to_denoised
from .errors import ModelOutputError, UserError
from .frame import alpha_bar_to_sigma, karras_sigmas, sigma_to_t

# Scheduler class -> frame of its sample: "vp" (sample = x_t) or "ve" (sample = y, model input scaled).
SCHEDULER_FRAMES = {
    "DDPMScheduler": "vp",
    "DDIMScheduler": "vp",
    "DPMSolverMultistepScheduler": "vp",
    "EulerDiscreteScheduler": "ve",
    "EulerAncestralDiscreteScheduler": "ve",
}


@dataclass(frozen=True)
class StepInfo:
    """Where step ``index`` sits in the one frame: sigma (VE), t = log(1 + sigma^2), the model's timestep."""

    index: int
    sigma: float
    timestep: float | None

    @property
    def t(self) -> float:
        return sigma_to_t(self.sigma)


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


def check_frame(scheduler: Any) -> str:
    name = type(scheduler).__name__
    if name not in SCHEDULER_FRAMES:
        raise UserError(f"unsupported scheduler {name}", f"supported: {', '.join(SCHEDULER_FRAMES)}; try --scheduler")
    return SCHEDULER_FRAMES[name]


class SchedulerStepper:
    """One batch sampled by a diffusers scheduler, as the model's own pipeline does it."""

    def __init__(self, scheduler: Any, denoiser: DiffusersDenoiser, steps: int):
        self.frame = check_frame(scheduler)
        self.scheduler = copy.deepcopy(scheduler)  # schedulers are stateful: one per batch
        self.scheduler.set_timesteps(steps)
        self.denoiser = denoiser
        self.timesteps = self.scheduler.timesteps
        self.infos = [StepInfo(i, self._sigma(i), float(t)) for i, t in enumerate(self.timesteps)]

    def _sigma(self, i: int) -> float:
        sigmas = getattr(self.scheduler, "sigmas", None)
        if sigmas is not None and len(sigmas) > i:
            return float(sigmas[i])
        alpha_bar = self.scheduler.alphas_cumprod[int(self.timesteps[i])]
        return float(alpha_bar_to_sigma(alpha_bar.double()))

    def init(self, noise: torch.Tensor) -> torch.Tensor:
        return noise.to(self.denoiser.device) * self.scheduler.init_noise_sigma

    def to_y(self, x: torch.Tensor, i: int) -> torch.Tensor:
        """The sample in the VE frame: y = x_t sqrt(1 + sigma^2) for VP schedulers, y = x for VE ones."""
        return x.float() * math.sqrt(1 + self.infos[i].sigma ** 2) if self.frame == "vp" else x.float()

    def step(self, x, i, cond, generators):
        t = self.timesteps[i]
        output = self.denoiser.model_output(self.scheduler.scale_model_input(x, t), t, cond)
        y = self.to_y(x, i)
        sigma = torch.full((x.shape[0],), self.infos[i].sigma, device=x.device)
        denoised = output_to_denoised(output, y, sigma, self.denoiser.prediction_type)
        x_next = self.scheduler.step(output.to(x.dtype), t, x, generator=generators).prev_sample
        return y, denoised, x_next

    def final(self, x: torch.Tensor) -> torch.Tensor:
        return x.float()


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
        self.gamma = min(churn / steps, math.sqrt(2) - 1) if churn > 0 else 0.0
        self.hat = (sigmas * (1 + self.gamma)).tolist()
        self.next = sigmas[1:].tolist() + [0.0]
        self.sigmas = sigmas.tolist()
        self.infos = [StepInfo(i, s, s) for i, s in enumerate(self.hat)]

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
