"""Adapters from every model family to the one contract of docs/design.md §2.

    denoise(y, sigma, timestep=None, cond=None) -> x0_hat
        y:     (B, C, H, W) float32, VE frame (y = x0 + sigma n)
        sigma: (B,) float32
        timestep: the model's own time for this sigma (scalar tensor or (B,)); None -> mapped from sigma
        cond:  dict of per-sample conditioning tensors with leading batch dim B (or None)

D is computed from the raw model output for its ``prediction_type``, never from a scheduler's
clipped ``pred_original_sample`` (clipping zeroes the Jacobian). Family branching lives here only.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol

import torch

from .errors import UserError

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


def _call_unet(model, x, timestep, cond):
    return model(x, timestep, **(cond or {})).sample


def _call_dit(model, x, timestep, cond):
    return model(x, timestep=timestep, **(cond or {})).sample


# class name -> how to call it. DiT hub checkpoints name their class Transformer2DModel;
# diffusers loads those as DiTTransformer2DModel, any other Transformer2DModel is rejected on load.
MODEL_CALLS: dict[str, Callable] = {
    "UNet2DModel": _call_unet,
    "UNet2DConditionModel": _call_unet,
    "DiTTransformer2DModel": _call_dit,
    "Transformer2DModel": _call_dit,
}


class DiffusersDenoiser:
    """A diffusers UNet or DiT as ``denoise(y, sigma, timestep, cond)`` (VP models).

    ``model_output`` is the raw network output on the model's own input x_t, with DiT's
    learned-variance channels dropped; ``__call__`` maps the VE frame in and D out.
    """

    def __init__(self, model: torch.nn.Module, prediction_type: str, alphas_cumprod: torch.Tensor):
        if prediction_type not in PREDICTION_TYPES:
            raise UserError(f"unsupported prediction_type {prediction_type!r}",
                            f"supported: {', '.join(PREDICTION_TYPES)}")
        self.module = model
        self.prediction_type = prediction_type
        self.class_name = type(model).__name__
        self._call = MODEL_CALLS[self.class_name]
        self.in_channels = int(model.config.in_channels)
        # Training noise levels, for mapping a free sigma to a (fractional) timestep.
        self.log_sigmas = ((1 - alphas_cumprod) / alphas_cumprod).sqrt().log().double()

    @property
    def dtype(self) -> torch.dtype:
        return next(self.module.parameters()).dtype

    @property
    def device(self) -> torch.device:
        return next(self.module.parameters()).device

    def model_output(self, x: torch.Tensor, timestep: Any, cond: dict | None = None) -> torch.Tensor:
        """Raw output (B, C, H, W) in float32 for model input x (the model's own x_t)."""
        timestep = torch.as_tensor(timestep, device=x.device)
        if timestep.ndim == 0:
            timestep = timestep.expand(x.shape[0])
        out = self._call(self.module, x.to(self.dtype), timestep, cond)
        return out[:, : self.in_channels].float()  # DiT: drop learned-variance channels

    def sigma_to_timestep(self, sigma: torch.Tensor) -> torch.Tensor:
        """Fractional training timestep whose noise level is sigma (interpolated in log sigma)."""
        log_sigma = sigma.double().log().cpu()
        idx = torch.searchsorted(self.log_sigmas, log_sigma).clamp(1, len(self.log_sigmas) - 1)
        lo, hi = self.log_sigmas[idx - 1], self.log_sigmas[idx]
        w = ((log_sigma - lo) / (hi - lo)).clamp(0, 1)
        return (idx - 1 + w).float()

    def __call__(self, y, sigma, timestep=None, cond=None):
        sigma = sigma.to(y.device)
        if timestep is None:
            timestep = self.sigma_to_timestep(sigma).to(y.device)
        x_t = y / torch.sqrt(1 + sigma.view(-1, 1, 1, 1) ** 2)
        return output_to_denoised(self.model_output(x_t, timestep, cond), y, sigma, self.prediction_type)
