"""The paper's patch score model: a translation-equivariant local empirical denoiser (docs/design.md §7).

Kamb & Ganguli's equivariant local score (ELS) machine on a small set of ±1 images. For pixel i,

    D_i(y) = Σ_μ w_μ,i(y) P^μ_0,   w_·,i = softmax_μ( -||y_Ω(i) - P^μ||^2 / (2 sigma^2) )

where P^μ runs over ALL patches of the training set (every position of every image, periodic
boundaries), Ω is the square patch of side p around i, y_Ω(i) the noisy patch there and P^μ_0 the
patch's centre pixel. Notation of ``diffcrit.spectral.theory``: at y = 0 all weights are equal (every ±1
patch has norm |Ω|), so J = C(δ)/sigma^2 on Ω and t_c = log(1 + C_Ω(0)).

Computation: identical patches are merged once, each keeping its multiplicity n_μ as log n_μ
added to its logit (exact: n identical terms e^l sum to e^{l + log n}). The aligned images give
only two distinct patches. Logits are one ``addmm`` per chunk of query pixels,
[y_Ω / sigma^2, 1 / sigma^2] · [P^μ, -||P^μ||^2 / 2] + log n_μ (the -||y_Ω||^2 term, and any constant
shift of ||P^μ||^2, is the same for every μ and cancels in the softmax); chunks bound the memory to ``block`` logits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

import torch

from ...errors import UserError
from ...spectral.fourier import ProbeDirections, integer_frequencies
from ...spectral.theory import patch_critical_t, patch_correlation, patch_offsets, patch_stiffness, patch_sum


def neighbour_index(height: int, width: int, p: int) -> torch.Tensor:
    """(H W, p*p) flat index of pixel i + δ (periodic) for every pixel i and offset δ ∈ Ω."""
    offsets = patch_offsets(p)
    iy = (torch.arange(height)[:, None, None] + offsets[:, 0]) % height  # (H, 1, |Ω|)
    ix = (torch.arange(width)[None, :, None] + offsets[:, 1]) % width  # (1, W, |Ω|)
    return (iy * width + ix).reshape(height * width, p * p)


def extract_patches(x: torch.Tensor, p: int) -> torch.Tensor:
    """Every periodic patch of x (B, C, H, W) -> (B, H W, C p^2), channel-major within a patch."""
    b, c, h, w = x.shape
    index = neighbour_index(h, w, p).to(x.device)
    return x.reshape(b, c, h * w)[:, :, index].permute(0, 2, 1, 3).reshape(b, h * w, c * p * p)


def domain_patterns(count: int, size: int, xi: float, generator: torch.Generator) -> torch.Tensor:
    """``count`` random ±1 domain patterns (count, 1, size, size): white noise smoothed by a Gaussian
    of width ``xi`` pixels (periodic), then the upper half of the pixels set +1 and the lower half -1
    (exactly zero-mean for even size; xi = 0 gives balanced independent pixels)."""
    if count == 0:
        return torch.zeros(0, 1, size, size)
    noise = torch.randn(count, 1, size, size, generator=generator, dtype=torch.float64)
    n = integer_frequencies(size).double()
    k2 = (2 * math.pi / size) ** 2 * (n[:, None] ** 2 + n[None, :] ** 2)
    smooth = torch.fft.ifft2(torch.fft.fft2(noise) * torch.exp(-0.5 * xi**2 * k2)).real
    rank = smooth.flatten(1).argsort(1).argsort(1)
    return torch.where(rank >= size * size // 2, 1.0, -1.0).view(count, 1, size, size).float()


@dataclass
class PatchModel:
    """Local empirical (patch) denoiser on an L x L periodic lattice, patch side p (odd).

    Training set (seeded by ``seed``): ``random`` random domain patterns (``domain_patterns``, domain
    width ``xi`` pixels) followed by ``aligned`` globally aligned pairs (all +1, all -1); every
    image ±1, the set zero-mean. Exact theory at y = 0 (docs/design.md §7): s(k) = 1 - C_Ω(k)/sigma^2,
    t_c = log(1 + C_Ω(0)); log(1 + p^2) if every patch were aligned.
    """

    L: int = 32
    p: int = 5
    random: int = 4
    aligned: int = 1
    xi: float = 3.0
    seed: int = 0
    name: str = "patch"
    images: torch.Tensor = field(init=False, repr=False)  # (N, 1, L, L) float32 ±1, the training set
    patches: torch.Tensor = field(init=False, repr=False)  # (M, p*p) distinct training patches
    counts: torch.Tensor = field(init=False, repr=False)  # (M,) multiplicity n_μ
    correlation: torch.Tensor = field(init=False, repr=False)  # (1, 1, p, p) C(δ), theory.patch_correlation
    _tables: dict = field(init=False, repr=False, default_factory=dict)

    block: ClassVar[int] = 2**20  # logits per chunk (4 MiB in float32)

    def __post_init__(self) -> None:
        if self.p < 1 or self.p % 2 == 0 or self.p > self.L:
            raise UserError(f"builtin:patch needs an odd patch side 1 <= p <= L, got p={self.p}, L={self.L}")
        if self.random < 0 or self.aligned < 0 or self.random + self.aligned == 0 or not 0 <= self.xi < math.inf:
            raise UserError("builtin:patch needs random >= 0, aligned >= 0 (not both 0) and a finite xi >= 0",
                            f"got random={self.random}, aligned={self.aligned}, xi={self.xi}")
        generator = torch.Generator().manual_seed(self.seed)
        ones = torch.ones(self.aligned, 1, self.L, self.L)
        aligned = torch.stack([ones, -ones], 1).reshape(2 * self.aligned, 1, self.L, self.L)
        self.images = torch.cat([domain_patterns(self.random, self.L, self.xi, generator), aligned])
        every = extract_patches(self.images, self.p).reshape(-1, self.p * self.p)
        self.patches, self.counts = torch.unique(every, dim=0, return_counts=True)
        self.correlation = patch_correlation(self.images, self.p)

    @property
    def shape(self) -> tuple[int, int, int]:
        return (1, self.L, self.L)

    def _table(self, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(keys (M, p^2 + 1) = [P, -(||P||^2 - min ||P||^2)/2], log n (M,), centres (M, 1)) in dtype on device.

        The norm term is shifted by its minimum (a constant over μ, so the softmax is unchanged): for
        ±1 patches it is then exactly 0, and log n_μ is not lost to float32 rounding of -|Ω|/(2 sigma^2).
        """
        key = (dtype, device)
        if key not in self._tables:
            patches = self.patches.double()
            norm2 = (patches**2).sum(1, keepdim=True)
            keys = torch.cat([patches, -0.5 * (norm2 - norm2.min())], 1)  # shift: softmax-invariant, keeps log n exact
            centre = patches[:, self.p * self.p // 2 : self.p * self.p // 2 + 1]
            self._tables[key] = tuple(t.to(device, dtype).contiguous()
                                      for t in (keys, self.counts.double().log(), centre))
        return self._tables[key]

    def __call__(self, y: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """D(y) (B, 1, H, W) for y (B, 1, H, W) in the VE frame, sigma (B,). Forward-AD friendly."""
        b, c, h, w = y.shape
        keys, log_count, centre = self._table(y.dtype, y.device)
        queries = extract_patches(y, self.p).reshape(b * h * w, c * self.p * self.p)
        inv = (1 / sigma.to(y.dtype) ** 2).repeat_interleave(h * w)[:, None]  # (B H W, 1)
        queries = torch.cat([queries, torch.ones_like(queries[:, :1])], 1) * inv
        rows = max(1, self.block // keys.shape[0])
        out = [torch.softmax(torch.addmm(log_count, chunk, keys.T), 1) @ centre for chunk in queries.split(rows)]
        return torch.cat(out).view(b, h, w, c).permute(0, 3, 1, 2)

    def theory(self, sigmas: list[float], directions: ProbeDirections) -> dict:
        return {"critical_t": patch_critical_t(self.correlation),
                "stiffness": patch_stiffness(self.correlation, sigmas, directions, self.L, self.L),
                "exact_everywhere": False,
                "formula": "at y = 0: s(k) = 1 - C_Omega(k)/sigma^2, C_Omega(k) = sum_{delta in Omega} C(delta) "
                           "cos(k.delta); t_c = log(1 + C_Omega(0))",
                "C_Omega_0": patch_sum(self.correlation),
                "markers": {"stiffness_zero": patch_critical_t(self.correlation)},
                "aligned_limit_t": math.log1p(self.p**2)}

    def describe(self) -> dict:
        return {"L": self.L, "p": self.p, "random": self.random, "aligned": self.aligned, "xi": self.xi,
                "seed": self.seed,
                "training_set": f"{self.random} random ±1 domain patterns (Gaussian-smoothed white noise of width "
                                f"xi px, thresholded at its median) + {self.aligned} aligned pair(s) (all +1, all -1)",
                "images": int(self.images.shape[0]), "patches": int(self.counts.sum()),
                "distinct_patches": int(self.patches.shape[0]),
                "correlation": self.correlation[0, 0].tolist(), "C_Omega_0": patch_sum(self.correlation)}
