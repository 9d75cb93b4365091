"""Classifier-free-guided DDIM sampling for the built-in class-conditional checkpoints.

A small helper for sample grids and sample-quality checks, on the one sampling loop
(sampling/loop.py) with the denoisers' own guidance (docs/design.md §2, §7). Frame: the model's
own VP state x_t (NCHW float32), diffusers integer ``timestep``s; the output is x0 in [-1, 1]
(the scheduler clips, as clip_sample says).

Guidance (Ho & Salimans 2022) on the network output, eps or v as the scheduler's prediction_type
says (both are affine in x0_hat at fixed x_t, so mixing outputs mixes denoised estimates):
out = out(x_t, null) + w * (out(x_t, c) - out(x_t, null)), w = ``guidance_scale`` (w = 1: plain
conditional sampling, no unconditional pass).
Seeds follow docs/design.md §9: sample i draws its noise from a CPU generator seeded seed + i.
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers import DDIMScheduler

from ..models.denoisers import DiffusersDenoiser
from ..models.families import ClassGuidance
from ..models.schedulers import family_of
from ..sampling.loop import Trajectories
from ..sampling.steppers import SchedulerStepper


def ddim_from(scheduler_config: dict[str, Any]) -> DDIMScheduler:
    """A deterministic (eta = 0) DDIM scheduler sharing the training noise schedule, with
    "trailing" spacing so the first step starts from the last training timestep."""
    config = {k: v for k, v in dict(scheduler_config).items() if not k.startswith("_")}
    config["timestep_spacing"] = "trailing"
    return DDIMScheduler.from_config(config)


def sample_cfg(
    unet: torch.nn.Module,
    scheduler_config: dict[str, Any],
    class_labels: torch.Tensor,
    null_class: int,
    guidance_scale: float = 3.0,
    num_inference_steps: int = 50,
    seed: int = 0,
) -> torch.Tensor:
    """Draw one sample per entry of ``class_labels`` (B,) int64 on the one sampling loop. Returns x0 (B, C, H, W)."""
    ddim = ddim_from(scheduler_config)
    denoiser = DiffusersDenoiser(unet, frame=family_of(ddim).frame(ddim))
    cfg = unet.config
    guidance = ClassGuidance("unet", int(null_class), int(null_class))
    cond = guidance.conditioning(class_labels, torch.full((len(class_labels),), float(guidance_scale)))
    shape, seeds = (cfg.in_channels, cfg.sample_size, cfg.sample_size), [seed + i for i in range(len(class_labels))]
    run = Trajectories(lambda: SchedulerStepper(ddim, denoiser, num_inference_steps), shape, seeds, len(seeds),
                       lambda i, rows: cond)
    return run.run()


def class_rows(n_classes: int, per_class: int) -> torch.Tensor:
    """Labels [0]*per_class + [1]*per_class + ... (one grid row per class), int64."""
    return torch.arange(n_classes).repeat_interleave(per_class)
