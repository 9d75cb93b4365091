"""One probe per shell and point: the shell-mean gain from a random-sign combination (docs/design.md §3).

Notation: u_m the unit plane waves of the probe set (``ProbeDirections``), M_n of them in shell n;
eps_m = ±1 (Rademacher). The combination of shell n,

    v_n = sum_{m in n} eps_m u_m / sqrt(M_n),       ||v_n|| = 1 (the u_m are orthonormal),

has <v_n, J v_n> = (1/M_n) sum_m <u_m, J u_m> + (1/M_n) sum_{m != m'} eps_m eps_m' <u_m, J u_m'>, and the cross
terms vanish in expectation over the signs: E_eps <v_n, J v_n> = mean_m <u_m, J u_m>, the per-direction shell mean
(Hutchinson's trace estimator restricted to the shell's span). One finite-difference pair per shell and point instead
of one per direction. A shell with one direction is probed along it, exactly.

The signs of probe point p at record s come from a generator seeded by (seed, s, p): independent of batching, of
the split over processes and of the sampling generators (never touched).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..spectral.fourier import ProbeDirections


def shell_signs(seed: int, step: int, point: int, count: int) -> np.ndarray:
    """(count,) Rademacher signs ±1.0 of probe point ``point`` at record ``step`` of a run seeded ``seed``."""
    return np.random.default_rng([seed, step, point]).integers(0, 2, count) * 2.0 - 1.0


def shell_tangents(directions: ProbeDirections, signs: np.ndarray) -> torch.Tensor:
    """(K, C, H, W) unit combinations v_n = sum_{m in n} signs_m u_m / sqrt(M_n) of each shell's directions;
    signs: (M,) ±1 over the probe set's directions."""
    vectors, shell = directions.vectors.double(), directions.shell
    weights = torch.as_tensor(signs, dtype=torch.float64)
    out = []
    for n in range(directions.n_shells):
        chosen = shell == n
        out.append(torch.einsum("m,mchw->chw", weights[chosen], vectors[chosen]) / math.sqrt(int(chosen.sum())))
    return torch.stack(out).to(directions.vectors.dtype)


def point_tangents(directions: ProbeDirections, seed: int, step: int, points: range) -> torch.Tensor:
    """(P, K, C, H, W): each probe point's shell combinations at record ``step`` (global point indices ``points``)."""
    return torch.stack([shell_tangents(directions, shell_signs(seed, step, p, directions.count)) for p in points])
