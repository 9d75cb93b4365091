"""The Gaussian null sampled by the model's own sampler (docs/design.md §6a).

A Gaussian field with the final samples' spectrum P (per channel and FFT bin, every bin) has the exact denoiser
D(y) = IFFT(P / (P + sigma^2) FFT(y)). Run through the same sampler, at the same steps and with the same per-sample
seeds as the model (common random numbers), its decided fraction is what a Gaussian crossover looks like *with
this sampler*: the sampler's discretisation error, ancestral noise and schedule are in it, so the model's excess
over it is the model's own. The network is replaced by the output the scheduler's frame maps to that D
(``frame.output``, the inverse of ``frame.denoised``); nothing else of the sampling changes.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ..models.schedulers import step_kwargs
from ..spectral.fourier import spectrum
from .steppers import KarrasEulerStepper, SchedulerStepper


def sample_spectrum(samples: torch.Tensor) -> torch.Tensor:
    """(C, H, W) float64 connected power of the samples (N, C, H, W) at every FFT bin (``spectrum``'s normalisation:
    a unit plane wave's variance)."""
    f = spectrum(samples)
    centred = f - f.mean(0, keepdim=True)
    return (centred.real**2 + centred.imag**2).mean(0)


class GaussianDenoiser:
    """D(y, sigma) = IFFT(P / (P + sigma^2) FFT(y)) for the spectrum P (C, H, W): the exact denoiser of a Gaussian
    field (docs/design.md §7); callable as every denoiser, (B, C, H, W) float32 in, float32 out."""

    def __init__(self, power: torch.Tensor, device: torch.device | str = "cpu"):
        self.power = power.double().to(device)
        self.device = torch.device(device)

    def __call__(self, y: torch.Tensor, sigma: torch.Tensor, timestep: Any = None, cond: Any = None) -> torch.Tensor:
        s2 = sigma.double().to(y.device).view(-1, 1, 1, 1) ** 2
        gain = self.power / (self.power + s2)
        return torch.fft.ifft2(gain * torch.fft.fft2(y.double())).real.float()


class _ThroughFrame:
    """The Gaussian D as a network seen through ``frame``: ``denoised`` reads D back from an output."""

    def __init__(self, null: GaussianDenoiser, frame: Any):
        self.null, self.frame, self.device = null, frame, null.device

    def __call__(self, y, sigma, timestep=None, cond=None):
        return self.null(y, sigma)

    def output(self, y: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return self.frame.output(self.null(y, sigma), y, sigma)

    def denoised(self, output: torch.Tensor, y: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return self.frame.denoised(output, y, sigma)


class NullSchedulerStepper(SchedulerStepper):
    """``SchedulerStepper`` with the network replaced by the output ``frame`` maps to the Gaussian D: every
    scheduler step (and its noise, drawn from the same generators) is the model's."""

    def __init__(self, scheduler: Any, null: GaussianDenoiser, frame: Any, steps: int, set_timesteps=None):
        super().__init__(scheduler, _ThroughFrame(null, frame), steps, set_timesteps)

    def _evaluate(self, x, j, cond, generators):
        sigma = self.sigmas[j]
        if math.isinf(sigma):  # pure noise (flow matching at s = 1): D = 0, the velocity is the sample itself
            output = x.float()
        else:
            y = self.family.to_y(x, sigma)
            output = self.denoiser.output(y, torch.full((x.shape[0],), sigma, device=x.device))
        t = self.timesteps[j]
        x_next = self.scheduler.step(output.to(x.dtype), t, x, **step_kwargs(self.scheduler, generators)).prev_sample
        return output, x_next


def null_stepper_factory(loaded: Any, steps: int, power: torch.Tensor, karras: dict | None = None):
    """() -> a stepper sampling the Gaussian null as ``loaded``'s own sampler does, or None where it cannot
    (a learned-variance scheduler wants variance channels no Gaussian gives). ``karras``: the Karras Euler
    settings of a callable or analytic model (sigma_min, sigma_max, rho, churn)."""
    null = GaussianDenoiser(power, loaded.device)
    if loaded.scheduler is None:
        return lambda: KarrasEulerStepper(null, steps, device=loaded.device, **(karras or {}))
    variance = str(getattr(loaded.scheduler.config, "variance_type", "") or "")
    if variance.startswith("learned"):
        return None
    frame = loaded.denoiser.frame
    return lambda: NullSchedulerStepper(loaded.scheduler, null, frame, steps, loaded.set_timesteps)
