"""Adapters from every model family to the one contract of docs/design.md §2.

    denoise(y, sigma, timestep=None, cond=None) -> x0_hat
        y:     (B, C, H, W) float32, VE frame (y = x0 + sigma n)
        sigma: (B,) float32
        timestep: the model's own time for this sigma (scalar tensor or (B,)); None -> mapped from sigma
        cond:  dict of per-sample conditioning tensors with leading batch dim B (or None); under ``GUIDANCE``
               the classifier-free guidance of each sample (``DiffusersDenoiser.model_output``)

D is computed from the raw model output for its ``prediction_type`` (by the scheduler family's frame,
``schedulers.py``), never from a scheduler's clipped ``pred_original_sample`` (clipping zeroes the
Jacobian). How each model family is called lives in ``families.py``.
"""

from __future__ import annotations

import warnings
from typing import Any, Callable, Protocol

import torch

from ..errors import DiffcritWarning, UserError
from .cond import GUIDANCE, concat_cond, guided, select_cond
from .families import model_family
from .schedulers import AlphaBarFrame


class Denoiser(Protocol):
    def __call__(self, y: torch.Tensor, sigma: torch.Tensor, timestep: Any = None,
                 cond: dict | None = None) -> torch.Tensor: ...


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
            frame = AlphaBarFrame(prediction_type, alphas_cumprod)
        self.module = model
        self.frame = frame
        self.prediction_type = frame.prediction_type
        self.class_name = type(model).__name__
        self.family = model_family(model)
        self.in_channels = self.family.channels(model.config)  # latent channels C of the (unpacked) grid
        self.max_rows: int | None = None  # rows per forward, set once one ran out of GPU memory (``_raw_output``)

    @property
    def dtype(self) -> torch.dtype:
        return next(self.module.parameters()).dtype

    @property
    def device(self) -> torch.device:
        return next(self.module.parameters()).device

    def model_output(self, x: torch.Tensor, timestep: Any, cond: dict | None = None) -> torch.Tensor:
        """Raw output (B, C or 2C, H, W) in float32 for model input x, as the pipeline gives it to the scheduler.

        With ``cond[GUIDANCE]``, the samples whose scale is not 1 are guided (``guided``) from one forward over
        [x; x[those]] with [cond; unconditional[those]]; the others get the conditional output alone."""
        rows = self.max_rows
        out = self._output(x, timestep, cond)
        if self.max_rows != rows:
            warnings.warn(f"out of memory on {x.device}: forwards split to at most {self.max_rows} rows (the results "
                          "are unchanged; `batch_size` / `probe_batch` set the rows)", DiffcritWarning, stacklevel=2)
        return out

    def _output(self, x: torch.Tensor, timestep: Any, cond: dict | None) -> torch.Tensor:
        timestep = torch.as_tensor(timestep, device=x.device)
        if timestep.ndim == 0:
            timestep = timestep.expand(x.shape[0])
        if cond is None or GUIDANCE not in cond:
            return self._raw_output(x, timestep, cond)
        own = {k: v for k, v in cond.items() if k != GUIDANCE}
        scale = cond[GUIDANCE]["scale"].to(x.device, torch.float32)
        rows = torch.nonzero(scale != 1.0).flatten()
        if rows.numel() == 0:
            return self._raw_output(x, timestep, own)
        both = concat_cond(own, select_cond(cond[GUIDANCE]["unconditional"], rows))
        out = self._raw_output(torch.cat([x, x[rows]]), torch.cat([timestep, timestep[rows]]), both)
        conditional = out[: x.shape[0]]
        conditional[rows] = guided(conditional[rows], out[x.shape[0]:], scale[rows], self.in_channels)
        return conditional

    def _raw_output(self, x: torch.Tensor, timestep: torch.Tensor, cond: dict | None) -> torch.Tensor:
        """One forward, or several of at most ``max_rows`` rows once a forward ran out of GPU memory (rows are
        independent, so the split changes nothing but the peak memory; it halves until one fits)."""
        n = x.shape[0]
        if self.max_rows is None or n <= self.max_rows:
            try:
                return self._forward(x, timestep, cond)
            except torch.cuda.OutOfMemoryError:
                if n == 1:
                    raise UserError(f"out of memory on {x.device} with one sample per forward: {self.class_name} "
                                    "does not fit", "use `dtype` bfloat16, a smaller `height`/`width`, or a larger "
                                    "GPU") from None
                self.max_rows = n // 2  # ``model_output`` says so once the forward has run
                torch.cuda.empty_cache()
        parts = [torch.arange(lo, min(lo + self.max_rows, n), device=x.device) for lo in range(0, n, self.max_rows)]
        return torch.cat([self._raw_output(x[rows], timestep[rows], select_cond(cond, rows)) for rows in parts])

    def _forward(self, x: torch.Tensor, timestep: torch.Tensor, cond: dict | None) -> torch.Tensor:
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
