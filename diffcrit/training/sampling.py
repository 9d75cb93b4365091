"""Classifier-free-guided DDIM sampling for the built-in class-conditional checkpoints.

A small helper for sample grids and sample-quality checks; the analysis engine has its own
sampler (docs/design.md §2, §7). Frame: the model's own VP state x_t (NCHW float32), diffusers
integer ``timestep``s; the output is x0 in [-1, 1] (the scheduler clips, as clip_sample says).

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

from ..sampling.steppers import per_sample_noise


def ddim_from(scheduler_config: dict[str, Any]) -> DDIMScheduler:
    """A deterministic (eta = 0) DDIM scheduler sharing the training noise schedule, with
    "trailing" spacing so the first step starts from the last training timestep."""
    config = {k: v for k, v in dict(scheduler_config).items() if not k.startswith("_")}
    config["timestep_spacing"] = "trailing"
    return DDIMScheduler.from_config(config)


def initial_noise(n: int, shape: tuple[int, int, int], seed: int) -> torch.Tensor:
    """(n, C, H, W) standard normal noise; row i drawn from a CPU generator seeded seed + i."""
    return per_sample_noise(tuple(shape), [torch.Generator().manual_seed(seed + i) for i in range(n)])


@torch.no_grad()
def sample_cfg(
    unet: torch.nn.Module,
    scheduler_config: dict[str, Any],
    class_labels: torch.Tensor,
    null_class: int,
    guidance_scale: float = 3.0,
    num_inference_steps: int = 50,
    seed: int = 0,
) -> torch.Tensor:
    """Draw one sample per entry of ``class_labels`` (B,) int64. Returns x0 (B, C, H, W)."""
    cfg = unet.config
    shape = (cfg.in_channels, cfg.sample_size, cfg.sample_size)
    ddim = ddim_from(scheduler_config)
    ddim.set_timesteps(num_inference_steps)
    x = initial_noise(len(class_labels), shape, seed)
    guided = guidance_scale != 1.0
    labels = torch.cat([class_labels, torch.full_like(class_labels, null_class)]) if guided \
        else class_labels
    for timestep in ddim.timesteps:
        x_in = torch.cat([x, x]) if guided else x
        out = unet(x_in, timestep, class_labels=labels).sample
        if guided:
            out_c, out_u = out.chunk(2)
            out = out_u + guidance_scale * (out_c - out_u)
        x = ddim.step(out, timestep, x).prev_sample
    return x


def class_rows(n_classes: int, per_class: int) -> torch.Tensor:
    """Labels [0]*per_class + [1]*per_class + ... (one grid row per class), int64."""
    return torch.arange(n_classes).repeat_interleave(per_class)
