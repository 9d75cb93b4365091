"""Closed-form predictions from data statistics (docs/design.md §3, §6): pure functions, tensors in.

Notation (one place; every function below uses it):
    x        data images, (N, C, H, W), clean x0 in the VE frame (docs/design.md §2)
    F(k)     FFT2(x) / sqrt(H W), as in ``fourier.fourier_sums``
    P_c(k)   power spectrum of channel c: connected E|F_c(k)|^2 - |E F_c(k)|^2, (C, H, W);
             for a stationary field the covariance eigenvalue of the plane wave at k
    Ω        square patch of odd side p centred on the pixel: offsets δ = (δy, δx), |δy|, |δx| <= (p-1)/2
    C(δ)     patch correlation, (C, C, p, p): covariance, over all patches (every position of every
             image, periodic boundaries, equal weights), of the centre pixel (channel c) with the
             pixel at offset δ (channel c'):  C_cc'(δ) = E[x_c(j) x_c'(j+δ)] - m_c m_c'
             (m_c the mean of channel c over all pixels of all images)
    C_Ω(k)   = Σ_{δ∈Ω} C(δ) cos(k·δ)
    Λ        top eigenvalue of the data covariance (1/N normalisation: the empirical distribution)
    sigma    VE noise level; t = log(1 + sigma^2)

Why C(δ): the patch model's logits are -||y_Ω(i) - P^μ||^2 / (2 sigma^2). When all patches have
the same norm (±1 images), the weights at y = 0 are equal, and differentiating the softmax gives
dD_i/dy_{i+δ} = Cov_μ(P^μ_0, P^μ_δ) / sigma^2 = C(δ) / sigma^2 for δ in Ω, 0 otherwise: a
convolution, diagonal in plane waves, with gain g(k) = C_Ω(k) / sigma^2 (docs/design.md §7).
"""

from __future__ import annotations

import math

import torch

from .fourier import ProbeDirections, shell_map


# --- shells ------------------------------------------------------------------------------------

def shell_means(values: torch.Tensor, directions: ProbeDirections) -> list[float]:
    """Average per-direction values (M,) over each probe shell -> [K], as the probes are averaged."""
    return [float(values[directions.shell == n].double().mean()) for n in range(directions.n_shells)]


def radial_profile(power: torch.Tensor) -> tuple[list[int], list[float]]:
    """Radially averaged spectrum: mean of (C, H, W) over channels and the FFT bins of each shell.

    Returns (shells n = 0..n_max, mean P per shell); every shell that holds a bin is listed.
    """
    shells = shell_map(power.shape[-2], power.shape[-1]).flatten()
    flat = power.double().reshape(-1, shells.numel()).mean(0)
    counts = torch.bincount(shells)
    sums = torch.bincount(shells, weights=flat)
    present = torch.nonzero(counts).flatten()
    return present.tolist(), (sums[present] / counts[present]).tolist()


# --- covariance and power spectrum -------------------------------------------------------------

def connected_power(sum_f: torch.Tensor, sum_f2: torch.Tensor, count: int) -> torch.Tensor:
    """P(k) = E|F(k)|^2 - |E F(k)|^2 from the sums of ``fourier.fourier_sums`` -> (C, H, W) float64."""
    mean = sum_f / count
    return (sum_f2 / count - mean.real**2 - mean.imag**2).double()


def covariance_from_sums(sum_x: torch.Tensor, gram: torch.Tensor, count: int) -> torch.Tensor:
    """Data covariance (d, d) = E[x x^T] - E[x] E[x]^T from Σ x (d,) and Σ x x^T (d, d)."""
    mean = sum_x.double() / count
    return gram.double() / count - torch.outer(mean, mean)


def top_eigenvalue(covariance: torch.Tensor) -> float:
    """Λ: the largest eigenvalue of a symmetric (d, d) matrix."""
    return float(torch.linalg.eigvalsh(covariance.double())[-1])


def speciation_time(top: float) -> float:
    """t_s = log(1 + Λ) in our OU time (docs/design.md §2): where sigma^2 = Λ, i.e. the noise variance
    equals the data variance along the top principal component.

    Biroli et al. (2024) use dx = -x dt + sqrt(2) dW, x_t = e^{-t_B} x0 + sqrt(1 - e^{-2 t_B}) z, and
    give t_s = ½ log Λ: the large-Λ form of ½ log(1 + Λ), where Λ e^{-2 t_B} = 1 - e^{-2 t_B}.
    Ours runs at half their speed (dx = -x/2 dt + dW, t = 2 t_B = log(1 + sigma^2)), hence log(1 + Λ).
    """
    return math.log1p(top)


def biroli_speciation_time(top: float) -> float:
    """t_s = ½ log Λ in Biroli et al.'s OU time t_B (= t / 2 here); see ``speciation_time``."""
    return 0.5 * math.log(top) if top > 0 else float("nan")


# --- Gaussian model: the exact linear denoiser of a stationary field --------------------------

def power_at(power: torch.Tensor, directions: ProbeDirections) -> torch.Tensor:
    """P at each probe direction (M,): its own channel and frequency on the (C, H, W) FFT grid."""
    h, w = power.shape[-2:]
    return power.double()[directions.channel, directions.freq[:, 0] % h, directions.freq[:, 1] % w]


def gaussian_stiffness(power: torch.Tensor, sigmas: list[float], directions: ProbeDirections) -> list[list[float]]:
    """s(k) = sigma^2 / (P(k) + sigma^2) (docs/design.md §7) at every probe direction, averaged per shell.

    power: (C, H, W) P_c(k) on the FFT grid. Returns [[s per shell] per sigma].
    """
    p = power_at(power, directions)
    return [shell_means(s**2 / (p + s**2), directions) for s in sigmas]


# --- patch model (docs/design.md §7) ----------------------------------------------------------------

def patch_offsets(p: int) -> torch.Tensor:
    """Offsets δ = (δy, δx) of the square patch Ω of odd side p, row-major: (p*p, 2) long."""
    if p < 1 or p % 2 == 0:
        raise ValueError(f"patch side p must be odd and >= 1, got {p}")
    r = torch.arange(-(p // 2), p // 2 + 1)
    dy, dx = torch.meshgrid(r, r, indexing="ij")
    return torch.stack([dy.flatten(), dx.flatten()], 1)


def lag_product_sums(images: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Σ_a w_a Σ_j x_c(j) x_c'(j+δ) for every periodic lag δ: (C, C, H, W) float64, index [δy % H, δx % W].

    Cross-correlation theorem: Σ_j x_c(j) x_c'(j+δ) = IFFT2(conj(X_c) X_c')(δ), X = FFT2(x).
    Sums merge across batches; ``weights`` (N,) count repeated images (default 1 each).
    """
    f = torch.fft.fft2(images.double())  # (N, C, H, W)
    w = torch.ones(images.shape[0], dtype=torch.float64) if weights is None else weights.double()
    cross = torch.einsum("n,nchw,ndhw->cdhw", w.to(torch.complex128), f.conj(), f)
    return torch.fft.ifft2(cross).real


def patch_correlation_from_sums(lag_sums: torch.Tensor, pixel_sums: torch.Tensor, count: float, p: int) -> torch.Tensor:
    """C(δ) (C, C, p, p) over δ ∈ Ω from ``lag_product_sums`` and the per-channel pixel sums (C,).

    count = total weight of the images times H W (the number of patches).
    """
    h, w = lag_sums.shape[-2:]
    mean = pixel_sums.double() / count
    full = lag_sums / count - mean[:, None, None, None] * mean[None, :, None, None]
    offsets = patch_offsets(p)
    window = full[:, :, offsets[:, 0] % h, offsets[:, 1] % w]  # (C, C, p*p)
    return window.reshape(*window.shape[:2], p, p)


def patch_correlation(images: torch.Tensor, p: int, weights: torch.Tensor | None = None) -> torch.Tensor:
    """C(δ) (C, C, p, p) of an in-memory image set (N, C, H, W), optionally weighted per image."""
    n, _, h, w = images.shape
    weights = torch.ones(n, dtype=torch.float64) if weights is None else weights.double()
    pixel_sums = torch.einsum("n,nc->c", weights, images.double().sum((-2, -1)))
    return patch_correlation_from_sums(lag_product_sums(images, weights), pixel_sums, float(weights.sum()) * h * w, p)


def patch_spectrum(correlation: torch.Tensor, freq: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """C_Ω(k) = Σ_{δ∈Ω} C(δ) cos(k·δ) at integer frequencies freq (M, 2) = (n_y, n_x) -> (M, C, C).

    k = 2π (n_x / W, n_y / H) on the (H, W) lattice the denoiser runs on.
    """
    p = correlation.shape[-1]
    offsets = patch_offsets(p).double()  # (|Ω|, 2)
    phase = 2 * math.pi * (freq[:, :1].double() * offsets[None, :, 0] / height
                           + freq[:, 1:].double() * offsets[None, :, 1] / width)  # (M, |Ω|)
    flat = correlation.double().reshape(*correlation.shape[:2], p * p)
    return torch.einsum("mo,cdo->mcd", torch.cos(phase), flat)


def patch_sum(correlation: torch.Tensor) -> float:
    """C_Ω(0) = Σ_{δ∈Ω} C(δ); for C > 1 channels the top eigenvalue of that C x C matrix."""
    total = correlation.double().sum((-2, -1))
    return float(torch.linalg.eigvalsh(total)[-1])


def patch_critical_t(correlation: torch.Tensor) -> float:
    """t_c = log(1 + C_Ω(0)): the DC mode at y = 0 turns unstable (s = 1 - C_Ω(0)/sigma^2 = 0);
    log(1 + |Ω|) for fully aligned patches (docs/design.md §7, the paper's formula)."""
    return math.log1p(patch_sum(correlation))


def patch_stiffness(correlation: torch.Tensor, sigmas: list[float], directions: ProbeDirections,
                    height: int, width: int) -> list[list[float]]:
    """Stiffness at y = 0, s = 1 - C_Ω,cc(k) / sigma^2 for each probe direction (channel c), per shell."""
    spectrum = patch_spectrum(correlation, directions.freq, height, width)  # (M, C, C)
    gain = spectrum[torch.arange(directions.count), directions.channel, directions.channel]
    return [shell_means(1 - gain / s**2, directions) for s in sigmas]
