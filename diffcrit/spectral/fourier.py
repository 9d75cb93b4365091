"""Fourier shells, plane-wave probe directions and structure factors (docs/design.md §3, §4).

Conventions: fields are NCHW; integer FFT frequencies (n_y, n_x) as in ``torch.fft.fftfreq(N) * N``;
wave-vector k = 2π (n_x / W, n_y / H) in radians per pixel; shell n holds the wave-vectors with
round(sqrt(n_x^2 + n_y^2)) == n, shell 0 is the constant (DC) mode.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import UserError


@dataclass(frozen=True)
class ProbeDirections:
    """Unit-norm real plane waves v_k, one per row (docs/design.md §3).

    vectors: (M, C, H, W) float32, ||v|| = 1;  shell: (M,) shell index;  channel: (M,);
    freq: (M, 2) integer (n_y, n_x);  phase: (M,) 0 for cos, 1 for sin;  k2: (M,) |k|^2 (rad/pixel)^2.
    """

    vectors: torch.Tensor
    shell: torch.Tensor
    channel: torch.Tensor
    freq: torch.Tensor
    phase: torch.Tensor
    k2: torch.Tensor
    n_shells: int

    @property
    def count(self) -> int:
        return int(self.vectors.shape[0])

    def describe(self) -> dict:
        """JSON block: which directions were probed, per shell."""
        return {
            "per_shell": [int((self.shell == n).sum()) for n in range(self.n_shells)],
            "k2_mean": [float(self.k2[self.shell == n].mean()) for n in range(self.n_shells)],
            "directions": [
                {"shell": int(s), "channel": int(c), "n_y": int(f[0]), "n_x": int(f[1]), "phase": "sin" if p else "cos"}
                for s, c, f, p in zip(self.shell, self.channel, self.freq, self.phase, strict=True)
            ],
        }


def integer_frequencies(n: int) -> torch.Tensor:
    """FFT frequencies of an n-point axis as integers, in FFT order."""
    return torch.round(torch.fft.fftfreq(n) * n).long()


def shell_map(height: int, width: int) -> torch.Tensor:
    """(H, W) integer shell index of each FFT bin: round(sqrt(n_x^2 + n_y^2))."""
    ny = integer_frequencies(height)[:, None].double()
    nx = integer_frequencies(width)[None, :].double()
    return torch.round(torch.sqrt(nx**2 + ny**2)).long()


def shell_wave_numbers(height: int, width: int, n_shells: int) -> list[float]:
    """k_n = 2π n / L for n = 0..K-1 (JSON ``shells``); L = W (square fields)."""
    return [2 * math.pi * n / width for n in range(n_shells)]


def _plane_wave(height: int, width: int, n_y: int, n_x: int, phase: int) -> torch.Tensor:
    y = torch.arange(height, dtype=torch.float64)[:, None]
    x = torch.arange(width, dtype=torch.float64)[None, :]
    angle = 2 * math.pi * (n_x * x / width + n_y * y / height)
    return torch.sin(angle) if phase else torch.cos(angle)


def _shell_candidates(height: int, width: int, n: int) -> list[tuple[int, int, int]]:
    """Distinct real plane waves (n_y, n_x, phase) of shell n, in a fixed order (|k|, angle, phase).

    k and -k give the same real waves, so one of each pair is kept; sin waves that vanish
    (k ≡ -k on the lattice: DC and Nyquist bins) are dropped.
    """
    seen, out = set(), []
    for n_y in integer_frequencies(height).tolist():
        for n_x in integer_frequencies(width).tolist():
            if round(math.hypot(n_x, n_y)) != n:
                continue
            key = (n_y % height, n_x % width)
            mirror = ((-n_y) % height, (-n_x) % width)
            if mirror in seen:
                continue
            seen.add(key)
            out.append((n_y, n_x, 0))
            if key != mirror:
                out.append((n_y, n_x, 1))
    return sorted(out, key=lambda c: (c[0] ** 2 + c[1] ** 2, math.atan2(c[0], c[1]), c[2]))


def plane_wave_directions(shape: tuple[int, int, int], n_shells: int, per_shell: int) -> ProbeDirections:
    """The probe set: every channel's DC mode, then ``per_shell`` waves in each shell 1..K-1.

    Shell waves are spread evenly over the shell's candidates and round-robin over channels,
    so the set is deterministic and independent of the data.
    """
    channels, height, width = shape
    rows: list[tuple[int, int, int, int, int]] = [(0, c, 0, 0, 0) for c in range(channels)]
    for n in range(1, n_shells):
        candidates = _shell_candidates(height, width, n)
        if not candidates:
            raise UserError(f"cannot probe {n_shells} shells: a {height}x{width} field has shells 0..{n - 1} only",
                            f"use `shells` {n} or fewer", option="shells")
        take = min(per_shell, len(candidates) * channels)
        for c in range(channels):
            count = len(range(c, take, channels))
            for j in range(count):
                n_y, n_x, phase = candidates[(j * len(candidates)) // count]
                rows.append((n, c, n_y, n_x, phase))
    vectors = torch.zeros(len(rows), channels, height, width, dtype=torch.float64)
    for i, (_, c, n_y, n_x, phase) in enumerate(rows):
        wave = _plane_wave(height, width, n_y, n_x, phase)
        vectors[i, c] = wave / wave.norm()
    freq = torch.tensor([[r[2], r[3]] for r in rows], dtype=torch.long)
    k2 = (2 * math.pi) ** 2 * ((freq[:, 1] / width) ** 2 + (freq[:, 0] / height) ** 2).double()
    return ProbeDirections(
        vectors=vectors.float(),
        shell=torch.tensor([r[0] for r in rows]),
        channel=torch.tensor([r[1] for r in rows]),
        freq=freq,
        phase=torch.tensor([r[4] for r in rows]),
        k2=k2,
        n_shells=n_shells,
    )


def spectrum(fields: torch.Tensor) -> torch.Tensor:
    """F = FFT2(field) / sqrt(H W) per sample and channel: (N, C, H, W) complex128.

    With this normalisation S(k) = E|F(k)|^2 - |E F(k)|^2 has mean over k equal to the per-pixel
    variance (Parseval).
    """
    return torch.fft.fft2(fields.double()) / math.sqrt(fields.shape[-1] * fields.shape[-2])


def fourier_sums(f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sufficient statistics of the connected structure factor from a ``spectrum`` F:
    (Σ_i F_i, Σ_i |F_i|^2), each (C, H, W). Sums over the batch merge across chunks and ranks."""
    return f.sum(0), (f.real**2 + f.imag**2).sum(0)


@dataclass(frozen=True)
class LowBins:
    """The FFT bins of shells 0..K-1 (both k and -k), whose per-sample coefficients are kept.

    index: (Q,) flat positions n_y * W + n_x (FFT order) into an (H, W) spectrum; shell: (Q,) shell
    of each bin; k2: (Q,) continuum |k|^2 (rad/pixel)^2. Summing a connected power over a shell's
    bins equals summing Var <v, field> over the shell's unit real plane waves v (cos and sin).
    """

    index: torch.Tensor
    shell: torch.Tensor
    k2: torch.Tensor
    n_shells: int


def low_bins(height: int, width: int, n_shells: int) -> LowBins:
    """Every FFT bin of shells 0..K-1 of an (H, W) field, in FFT order."""
    shells = shell_map(height, width).flatten()
    index = torch.nonzero(shells < n_shells).flatten()
    ny = integer_frequencies(height)[:, None].double().expand(height, width).flatten()[index]
    nx = integer_frequencies(width)[None, :].double().expand(height, width).flatten()[index]
    k2 = (2 * math.pi) ** 2 * ((nx / width) ** 2 + (ny / height) ** 2)
    return LowBins(index=index, shell=shells[index], k2=k2, n_shells=n_shells)


def shell_coefficients(f: torch.Tensor, bins: LowBins) -> torch.Tensor:
    """Per-sample coefficients of a ``spectrum`` F at the low bins: (N, C, Q) complex128.

    Enough to evaluate every ensemble observable of the low shells (structure factors, the
    decided fraction, correlation lengths) on any resample of the samples.
    """
    return f.flatten(-2)[..., bins.index.to(f.device)]


def direction_bins(directions: ProbeDirections, bins: LowBins) -> tuple[np.ndarray, np.ndarray]:
    """(channel, low-bin position) of each probe direction: (M,), (M,) for indexing (C, Q) arrays."""
    height_width = int(directions.vectors.shape[-2]), int(directions.vectors.shape[-1])
    flat = (directions.freq[:, 0] % height_width[0]) * height_width[1] + directions.freq[:, 1] % height_width[1]
    position = {int(q): j for j, q in enumerate(bins.index)}
    return directions.channel.numpy(), np.array([position[int(q)] for q in flat])
