"""Adapters from every model family to the one contract of docs/design.md §2.

    denoise(y, sigma, timestep=None, cond=None) -> x0_hat
        y:     (B, C, H, W) float32, VE frame (y = x0 + sigma n)
        sigma: (B,) float32
        timestep: the model's own time for this sigma (scalar tensor or (B,)); None -> mapped from sigma
        cond:  dict of per-sample conditioning tensors with leading batch dim B (or None)

D is computed from the raw model output for its ``prediction_type`` (by the scheduler family's frame,
``schedulers.py``), never from a scheduler's clipped ``pred_original_sample`` (clipping zeroes the
Jacobian). How each model family is called lives in ``families.py``.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol

import torch

from ..errors import UserError
from .families import model_family

PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")


class Denoiser(Protocol):
    def __call__(self, y: torch.Tensor, sigma: torch.Tensor, timestep: Any = None,
                 cond: dict | None = None) -> torch.Tensor: ...


def output_to_denoised(output: torch.Tensor, y: torch.Tensor, sigma: torch.Tensor,
                       prediction_type: str) -> torch.Tensor:
    """x0_hat from a VP model's raw output, written in the VE frame (docs/design.md §2).

    With ab = 1 / (1 + sigma^2) and x_t = sqrt(ab) y:
      epsilon:       x0 = (x_t - sqrt(1-ab) eps) / sqrt(ab) = y - sigma eps
      v_prediction:  x0 = sqrt(ab) x_t - sqrt(1-ab) v       = y / (1 + sigma^2) - sigma / sqrt(1 + sigma^2) v
      sample:        x0 = output
    """
    s = sigma.view(-1, 1, 1, 1).to(y.dtype)
    if prediction_type == "epsilon":
        return y - s * output
    if prediction_type == "v_prediction":
        return y / (1 + s**2) - s / torch.sqrt(1 + s**2) * output
    if prediction_type == "sample":
        return output
    raise UserError(f"unsupported prediction_type {prediction_type!r}", f"supported: {', '.join(PREDICTION_TYPES)}")


def select_cond(cond: dict | None, index: torch.Tensor) -> dict | None:
    """Rows ``index`` of every tensor in a (possibly nested) conditioning dict."""
    if cond is None:
        return None
    return {k: select_cond(v, index) if isinstance(v, dict) else v[index.to(v.device)] for k, v in cond.items()}


class CallableDenoiser:
    """A user's or analytic ``denoise(y, sigma)``; timestep and conditioning are ignored."""

    def __init__(self, fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]):
        self.fn = fn
        self.module = fn if isinstance(fn, torch.nn.Module) else None

    def __call__(self, y, sigma, timestep=None, cond=None):
        return self.fn(y, sigma)


class DiffusersDenoiser:
    """A diffusers UNet or transformer as ``denoise(y, sigma, timestep, cond)``.

    ``model_output`` is the raw network output on the model's own input and latent grid (unpacked: (B, C, H, W)),
    as its pipeline hands it to ``scheduler.step`` (learned-variance channels dropped unless the family's
    pipeline passes them on: ``Family.scheduler_gets_variance``); ``denoised`` reads D from its mean channels
    only. ``frame`` maps the VE frame in and D out for the scheduler's family (``schedulers.py``); by default a
    VP network with ``prediction_type`` and ``alphas_cumprod``.
    """

    def __init__(self, model: torch.nn.Module, prediction_type: str | None = None,
                 alphas_cumprod: torch.Tensor | None = None, frame: Any = None):
        if frame is None:
            from .schedulers import AlphaBarFrame

            frame = AlphaBarFrame(prediction_type, alphas_cumprod)
        self.module = model
        self.frame = frame
        self.prediction_type = frame.prediction_type
        self.class_name = type(model).__name__
        self.family = model_family(model)
        self.in_channels = self.family.channels(model.config)  # latent channels C of the (unpacked) grid

    @property
    def dtype(self) -> torch.dtype:
        return next(self.module.parameters()).dtype

    @property
    def device(self) -> torch.device:
        return next(self.module.parameters()).device

    def model_output(self, x: torch.Tensor, timestep: Any, cond: dict | None = None) -> torch.Tensor:
        """Raw output (B, C or 2C, H, W) in float32 for model input x, as the pipeline gives it to the scheduler."""
        timestep = torch.as_tensor(timestep, device=x.device)
        if timestep.ndim == 0:
            timestep = timestep.expand(x.shape[0])
        out = self.family.call(self.module, x.to(self.dtype), timestep, cond)
        return (out if self.family.scheduler_gets_variance else out[:, : self.in_channels]).float()

    def denoised(self, output: torch.Tensor, y: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """D(y) from a ``model_output``: its mean channels (the first C), never the learned variance."""
        return self.frame.denoised(output[:, : self.in_channels], y, sigma)

    def sigma_to_timestep(self, sigma: torch.Tensor) -> torch.Tensor:
        """The model's (fractional) timestep for noise level sigma."""
        return self.frame.timestep(sigma)

    def __call__(self, y, sigma, timestep=None, cond=None):
        sigma = sigma.to(y.device)
        if timestep is None:
            timestep = self.sigma_to_timestep(sigma).to(y.device)
        return self.denoised(self.model_output(self.frame.model_input(y, sigma), timestep, cond), y, sigma)
