"""The one frame (docs/design.md §2) is right for every supported scheduler.

An exact denoiser (the Gaussian field) is dressed as an epsilon-predicting diffusers model: it reads
its noise level from the timestep exactly as the scheduler's training sigmas define it. Then the
stiffness measured along each scheduler's own trajectory must equal sigma^2 / (P + sigma^2) at the
sigma diffcrit records for the step: a wrong sigma, y scaling or timestep would break it.
"""

import types

import numpy as np
import pytest
import torch
from diffusers import (DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, EulerAncestralDiscreteScheduler,
                       EulerDiscreteScheduler)

from diffcrit.analysis import engine
from diffcrit.analysis.curves import compute_curves
from diffcrit.models.builtins.analytic import GaussianField
from diffcrit.config import make_config
from diffcrit.models.denoisers import DiffusersDenoiser
from diffcrit.spectral.fourier import plane_wave_directions
from diffcrit.models.loading import LoadedModel


class UNet2DModel(torch.nn.Module):  # named like diffusers' class so the adapter calls it the same way
    """eps(x_t, timestep) of a Gaussian field, for a scheduler's training noise levels."""

    def __init__(self, field: GaussianField, alphas_cumprod: torch.Tensor):
        super().__init__()
        self.field = field
        self.log_sigmas = ((1 - alphas_cumprod) / alphas_cumprod).sqrt().log().double()
        self.config = types.SimpleNamespace(in_channels=1)
        self.anchor = torch.nn.Parameter(torch.zeros(1))  # gives the module a dtype and device

    def forward(self, x_t, timestep, **cond):
        steps = torch.arange(len(self.log_sigmas), dtype=torch.float64)
        log_sigma = np.interp(timestep.double().cpu().numpy(), steps.numpy(), self.log_sigmas.numpy())
        sigma = torch.as_tensor(np.exp(log_sigma)).view(-1, 1, 1, 1)
        y = x_t.double() * torch.sqrt(1 + sigma**2)
        eps = (y - self.field(y, sigma.view(-1))) / sigma
        return types.SimpleNamespace(sample=eps.to(x_t.dtype))


SCHEDULERS = {
    "ddpm": lambda: DDPMScheduler(num_train_timesteps=1000, clip_sample=False),
    "ddim": lambda: DDIMScheduler(num_train_timesteps=1000, clip_sample=False),
    "dpm++": lambda: DPMSolverMultistepScheduler(num_train_timesteps=1000),
    "euler_karras": lambda: EulerDiscreteScheduler(num_train_timesteps=1000, use_karras_sigmas=True),
    "euler_ancestral": lambda: EulerAncestralDiscreteScheduler(num_train_timesteps=1000),
}


@pytest.mark.parametrize("name", list(SCHEDULERS))
def test_stiffness_matches_theory_along_every_scheduler(name):
    scheduler = SCHEDULERS[name]()
    field = GaussianField(size=8, xi=2.0)
    model = UNet2DModel(field, scheduler.alphas_cumprod)
    denoiser = DiffusersDenoiser(model, "epsilon", scheduler.alphas_cumprod)
    config = make_config(steps=12, samples=4, shells=3, directions=2, probe_samples=2, bootstrap=0, probe="fd",
                         probe_schedule="every")
    loaded = LoadedModel(denoiser, field.shape, {"id": name}, torch.device("cpu"), module=model, scheduler=scheduler)
    directions = plane_wave_directions(field.shape, config.shells, config.directions)
    seen = []
    capture = types.SimpleNamespace(write=lambda info, y, d: seen.append((info.sigma, y, d)))
    records, samples = engine.run(loaded, config, directions, capture, lambda event: None)
    for sigma, y, denoised in seen:  # the recorded (y, sigma) pair is where the model's D was taken
        exact = field(y.double(), torch.full((len(y),), sigma, dtype=torch.float64))
        torch.testing.assert_close(denoised.double(), exact, atol=2e-4 * (1 + sigma), rtol=1e-4)
    curves = compute_curves(records, directions)
    predicted = np.array(field.theory([info.sigma for info in records.infos], directions)["stiffness"])
    np.testing.assert_allclose(curves.stiffness, predicted, atol=2e-3)
    assert np.isfinite(samples).all()
