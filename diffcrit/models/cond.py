"""The conditioning dict every denoiser takes: its one reserved key and its row operations (docs/design.md §2).

``cond`` maps model keywords to per-sample tensors with leading batch dim B (nested dicts allowed). Under ``GUIDANCE``
it carries the classifier-free guidance of each sample: {"scale": (B,) float, "unconditional": the other branch's
conditioning dict (null class, negative prompt), rows as the samples'}; that key is not a model keyword.
"""

from __future__ import annotations

import torch

GUIDANCE = "classifier_free_guidance"


def select_cond(cond: dict | None, index: torch.Tensor) -> dict | None:
    """Rows ``index`` of every tensor in a (possibly nested) conditioning dict."""
    if cond is None:
        return None
    return {k: select_cond(v, index) if isinstance(v, dict) else v[index.to(v.device)] for k, v in cond.items()}


def concat_cond(first: dict, second: dict) -> dict:
    """Two conditioning dicts of the same keys stacked along the batch (nested dicts too)."""
    return {k: concat_cond(v, second[k]) if isinstance(v, dict) else torch.cat([v, second[k].to(v.device)])
            for k, v in first.items()}


def guided(conditional: torch.Tensor, unconditional: torch.Tensor, scale: torch.Tensor, channels: int) -> torch.Tensor:
    """Classifier-free guidance (Ho & Salimans 2022) as the diffusers pipelines apply it: out_u + s (out_c - out_u)
    on the first ``channels`` (the mean; learned-variance channels keep the conditional output)."""
    s = scale.view(-1, *([1] * (conditional.ndim - 1))).to(conditional.dtype)
    out = conditional.clone()
    out[:, :channels] = unconditional[:, :channels] + s * (conditional[:, :channels] - unconditional[:, :channels])
    return out
