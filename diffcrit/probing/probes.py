"""Jacobian-vector products of the denoiser along plane waves (docs/design.md §3).

    gains[p, m] = <v_m, J(y_p) v_m>,   J = dD/dy at the probe point y_p

computed by forward-mode AD (``torch.func.jvp`` under ``vmap`` over the tangents of each probe
point, so the primal runs once; where vmap lacks a rule, one batched call with the point repeated)
or by central finite differences in float32 (``[y + h v; y - h v]`` in one forward call,
h = fd_step * sqrt(1 + sigma^2), the typical mode amplitude). Probing reads the denoiser only: it never
touches the sampling generators.
"""

from __future__ import annotations

import contextlib
import math
import weakref
from typing import Callable, Iterator

import torch
from torch.func import jvp, vmap

# denoise_at(Y, rows) -> D(Y): Y (B, C, H, W); rows (B,) says which probe point each row belongs to
# (so per-sample conditioning can follow it); sigma, timestep and conditioning are bound in it.
BoundDenoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

FORWARD_AD_ERRORS = (RuntimeError, NotImplementedError)


def _contiguous_inputs(module: torch.nn.Module, args: tuple) -> tuple:
    return tuple(a.contiguous() if torch.is_tensor(a) else a for a in args)


@contextlib.contextmanager
def forward_ad_safe(module: torch.nn.Module | None) -> Iterator[None]:
    """Work around forward-AD blockers (docs/design.md §3) for the duration of a JVP.

    Fused SDPA kernels have no forward derivative: use the math backend. GroupNorm fails on
    non-contiguous input under forward AD: make its input contiguous (same values).
    """
    from torch.nn.attention import SDPBackend, sdpa_kernel

    hooks = []
    if module is not None:
        hooks = [m.register_forward_pre_hook(_contiguous_inputs) for m in module.modules()
                 if isinstance(m, torch.nn.GroupNorm)]
    try:
        with sdpa_kernel(SDPBackend.MATH):
            yield
    finally:
        for hook in hooks:
            hook.remove()


def _chunks(total: int, size: int) -> Iterator[slice]:
    for start in range(0, total, size):
        yield slice(start, min(start + size, total))


def jvp_columns(denoise_at: BoundDenoiser, points: torch.Tensor, rows: torch.Tensor,
                tangents: torch.Tensor) -> torch.Tensor:
    """J(points[rows]) tangents by forward-mode AD; one batched call (the base point repeated)."""
    base = points[rows]
    _, columns = jvp(lambda z: denoise_at(z, rows), (base,), (tangents,))
    return columns


def jvp_columns_shared(denoise_at: BoundDenoiser, points: torch.Tensor, rows: torch.Tensor,
                       tangents: torch.Tensor) -> torch.Tensor:
    """Same columns, one ``vmap`` over the tangents of each probe point: the primal forward runs once
    per point instead of once per tangent (1.7x faster on a cifar-sized UNet on CPU)."""
    columns = torch.empty_like(tangents)
    for p in rows.unique().tolist():
        chosen = (rows == p).nonzero().squeeze(1)
        point, row = points[p : p + 1], rows[chosen[:1]]

        def column(v: torch.Tensor, point=point, row=row) -> torch.Tensor:
            return jvp(lambda z: denoise_at(z, row), (point,), (v[None],))[1][0]

        columns[chosen] = vmap(column)(tangents[chosen])
    return columns


# Modules on which vmap over tangents failed once: they use the repeated-batch form. Weak
# references: an entry goes with its module, so a new module never inherits another's verdict.
_NO_VMAP: weakref.WeakSet[torch.nn.Module] = weakref.WeakSet()


def _jvp_any(denoise_at, points, rows, tangents, module) -> torch.Tensor:
    """vmap first; a module without a batching rule is remembered (no module: tried every call)."""
    if module is None or module not in _NO_VMAP:
        try:
            return jvp_columns_shared(denoise_at, points, rows, tangents)
        except FORWARD_AD_ERRORS:  # an op without a batching rule (or forward AD: retried and re-raised below)
            if module is not None:
                _NO_VMAP.add(module)
    return jvp_columns(denoise_at, points, rows, tangents)


def fd_columns(denoise_at: BoundDenoiser, points: torch.Tensor, rows: torch.Tensor, tangents: torch.Tensor,
               step: torch.Tensor) -> torch.Tensor:
    """Central differences (D(y + h v) - D(y - h v)) / 2h in float32; one forward of 2B rows."""
    base = points[rows].float()
    h = step[rows].view(-1, 1, 1, 1)
    both = denoise_at(torch.cat([base + h * tangents, base - h * tangents]), torch.cat([rows, rows])).float()
    plus, minus = both.chunk(2)
    return (plus - minus) / (2 * h)


def mode_gains(denoise_at: BoundDenoiser, points: torch.Tensor, directions: torch.Tensor, method: str,
               fd_step: float, sigma: float, batch: int, module: torch.nn.Module | None = None) -> torch.Tensor:
    """gains (P, M) = <v_m, J(y_p) v_m> for P probe points and M unit directions.

    ``directions``: (M, C, H, W) shared by the points, or (P, M, C, H, W) of each point (the shell combinations
    of hutchinson.py); ``method`` is "jvp" or "fd"; pairs (p, m) are processed ``batch`` at a time.
    """
    per_point = directions.dim() == points.dim() + 1
    n_points, n_dirs = points.shape[0], directions.shape[1 if per_point else 0]
    pairs_p = torch.arange(n_points).repeat_interleave(n_dirs)
    pairs_m = torch.arange(n_dirs).repeat(n_points)
    gains = torch.empty(n_points * n_dirs, dtype=torch.float64)
    step = torch.full((n_points,), fd_step * math.sqrt(1 + sigma**2), device=points.device)
    for sl in _chunks(len(pairs_p), batch):
        rows = pairs_p[sl].to(points.device)
        picked = directions[pairs_p[sl], pairs_m[sl]] if per_point else directions[pairs_m[sl]]
        tangents = picked.to(points.device, points.dtype)
        if method == "jvp":
            with forward_ad_safe(module):
                columns = _jvp_any(denoise_at, points, rows, tangents, module)
        else:
            with torch.no_grad():
                columns = fd_columns(denoise_at, points, rows, tangents, step)
        gains[sl] = (tangents.double() * columns.double()).flatten(1).sum(1).cpu()
    return gains.view(n_points, n_dirs)


def forwards_per_pair(method: str) -> int:
    """Model rows one (point, direction) pair costs: 2 for central differences; one JVP (about 4.5 forwards'
    time through a UNet, bench/README.md) counts as 1."""
    return 2 if method == "fd" else 1
