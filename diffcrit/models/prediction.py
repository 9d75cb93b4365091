"""Prediction types and their conversion to the denoised estimate in the one frame (docs/design.md §2).

A VP model's raw output is one of ``PREDICTION_TYPES``; ``output_to_denoised`` turns it into x0_hat = D(y) in the
VE frame (y = x0 + sigma n, y and output: (B, C, H, W), sigma: (B,)), ``denoised_to_output`` is its inverse.
"""

from __future__ import annotations

import torch

from ..errors import UserError

PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")


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


def denoised_to_output(d: torch.Tensor, y: torch.Tensor, sigma: torch.Tensor, prediction_type: str) -> torch.Tensor:
    """The raw output a VP model of ``prediction_type`` gives for the denoised d at y: the inverse of
    ``output_to_denoised`` (eps = (y - x0) / sigma; v = (y / (1 + sigma^2) - x0) sqrt(1 + sigma^2) / sigma)."""
    s = sigma.view(-1, 1, 1, 1).to(y.dtype)
    if prediction_type == "epsilon":
        return (y - d) / s
    if prediction_type == "v_prediction":
        return (y / (1 + s**2) - d) * torch.sqrt(1 + s**2) / s
    if prediction_type == "sample":
        return d
    raise UserError(f"unsupported prediction_type {prediction_type!r}", f"supported: {', '.join(PREDICTION_TYPES)}")
