"""Analytic built-in models with exact denoisers (docs/design.md §7): ground truth for the tests.

Each model is a callable ``denoise(y, sigma) -> x0_hat`` (y: (B, C, H, W) in the VE frame,
sigma: (B,)) plus ``theory(sigmas, directions)``, the exact stiffness at y = 0 for the probed
directions and the predicted critical time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy import optimize

from ...errors import UserError
from ...spectral.fourier import ProbeDirections, integer_frequencies, low_bins


def check_option(model: str, name: str, value, low: float, strict: bool = False, integer: bool = False) -> None:
    """One option of a built-in in its range: a finite number (an integer) >= low, or > low if ``strict``."""
    kind = "an integer" if integer else "a finite number"
    number = isinstance(value, int) if integer else isinstance(value, (int, float)) and math.isfinite(value)
    if isinstance(value, bool) or not number or not (value > low if strict else value >= low):
        raise UserError(f"builtin:{model} option {name}={value!r} is out of range",
                        f"allowed: {kind} {'>' if strict else '>='} {low:g}")


def check_field(model: str, size: int, channels: int) -> None:
    """The lattice of an analytic built-in: size >= 2 (shell 1 needs two frequencies), channels >= 1."""
    check_option(model, "size", size, 2, integer=True)
    check_option(model, "channels", channels, 1, integer=True)


def _shell_means(values: torch.Tensor, directions: ProbeDirections) -> list[float]:
    """Average per-direction values (M,) over each shell."""
    return [float(values[directions.shell == n].mean()) for n in range(directions.n_shells)]


@dataclass
class GaussianField:
    """Stationary Gaussian field with Ornstein–Zernike spectrum P(k) = A / (1 + (xi |k|)^2).

    A is set so that the per-pixel variance is ``variance`` (Parseval: mean_k P(k) = variance).
    Exact denoiser (docs/design.md §7): D = IFFT(P / (P + sigma^2) FFT(y)); s(k) = sigma^2 / (P(k) + sigma^2)
    everywhere, so there is no critical point (negative control).
    """

    size: int = 32
    channels: int = 1
    xi: float = 4.0
    variance: float = 1.0
    name: str = "gaussian"
    spectrum: torch.Tensor = field(init=False, repr=False)

    def __post_init__(self) -> None:
        check_field(self.name, self.size, self.channels)
        check_option(self.name, "xi", self.xi, 0)
        check_option(self.name, "variance", self.variance, 0, strict=True)
        ny = integer_frequencies(self.size)[:, None].double()
        nx = integer_frequencies(self.size)[None, :].double()
        k2 = (2 * math.pi / self.size) ** 2 * (nx**2 + ny**2)
        shape = 1 / (1 + self.xi**2 * k2)
        self.spectrum = self.variance * shape / shape.mean()  # P(k) on the (H, W) FFT grid

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.channels, self.size, self.size)

    def power(self, freq: torch.Tensor) -> torch.Tensor:
        """P at integer frequencies (M, 2) = (n_y, n_x)."""
        return self.spectrum[freq[:, 0] % self.size, freq[:, 1] % self.size]

    def __call__(self, y: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        p = self.spectrum.to(y.device)
        gain = p / (p + sigma.double().view(-1, 1, 1, 1) ** 2)
        return torch.fft.ifft2(gain * torch.fft.fft2(y.double())).real.to(y.dtype)

    def theory(self, sigmas: list[float], directions: ProbeDirections) -> dict:
        p = self.power(directions.freq)
        curves = [_shell_means(s**2 / (p + s**2), directions) for s in sigmas]
        return {"critical_t": None, "stiffness": curves, "exact_everywhere": True,
                "formula": "s(k) = sigma^2 / (P(k) + sigma^2); decided fraction of shell n "
                           "sum P^2/(P + sigma^2) / sum P over its bins",
                "decision_by_shell": self.decision_times(directions.n_shells)}

    def decided(self, sigma: float, n_shells: int) -> list[float]:
        """Exact decided fraction of each shell at ``sigma``: sum P^2/(P + sigma^2) / sum P over its bins."""
        bins = low_bins(self.size, self.size, n_shells)
        p, shell = self.spectrum.flatten()[bins.index].double(), bins.shell
        return [float((p[shell == n] ** 2 / (p[shell == n] + sigma**2)).sum() / p[shell == n].sum())
                for n in range(n_shells)]

    def decision_times(self, n_shells: int) -> list[float]:
        """t where each shell's exact decided fraction is 1/2 (the DC mode: log(1 + P(0)), its speciation time)."""
        return [_half_decided_t(lambda sigma, n=n: self.decided(sigma, n_shells)[n]) for n in range(n_shells)]

    def describe(self) -> dict:
        return {"size": self.size, "channels": self.channels, "xi": self.xi, "variance": self.variance,
                "spectrum": "P(k) = A / (1 + (xi |k|)^2), mean_k P = variance"}


_HERMITE = np.polynomial.hermite_e.hermegauss(80)


def mixture_decided(a: float, nodes: int = 80) -> float:
    """E tanh^2(a + sqrt(a) z), z standard normal (Gauss–Hermite): the two-point mixture's decided fraction."""
    z, w = np.polynomial.hermite_e.hermegauss(nodes)
    return float((w * np.tanh(a + math.sqrt(a) * z) ** 2).sum() / w.sum())


def mixture_unstable_share(a: float, depth: float) -> float:
    """The share of the two-point mixture's states at a = |m|^2 / sigma^2 (noise 0) whose DC stiffness is below
    -depth (docs/design.md §5): s = 1 - a sech^2(u) with u = a + sqrt(a) z along the exact marginal, so s < -depth
    where |u| < c = arccosh(sqrt(a / (1 + depth))): Phi((c - a) / sqrt(a)) - Phi((-c - a) / sqrt(a)); 0 where
    a <= 1 + depth."""
    from scipy.stats import norm

    if a <= 1 + depth:
        return 0.0
    c, spread = math.acosh(math.sqrt(a / (1 + depth))), math.sqrt(a)
    return float(norm.cdf((c - a) / spread) - norm.cdf((-c - a) / spread))


def noisy_mixture_decided(m2: float, noise: float, sigma: float) -> float:
    """The decided fraction along m of x0 = ±m + sqrt(noise) g (docs/design.md §7, Biroli et al. 2024).

    With s = noise + sigma^2 and y_m = |m| + sqrt(s) w (one class; D is odd, so both give the same D^2):
    E_w[(noise/s y_m + |m| sigma^2/s tanh(|m| y_m / s))^2] / (|m|^2 + noise). noise = 0 gives E tanh^2(a + sqrt(a) z).
    """
    z, w = _HERMITE
    m, s = math.sqrt(m2), noise + sigma**2
    y = m + math.sqrt(s) * z
    d = noise / s * y + m * sigma**2 / s * np.tanh(m * y / s)
    return float((w * d**2).sum() / w.sum() / (m2 + noise))


def _half_decided_t(decided) -> float:
    """t at which a decided fraction ``decided(sigma)``, falling with sigma, is 1/2."""
    log_sigma = optimize.brentq(lambda u: decided(math.exp(u)) - 0.5, -12.0, 12.0)
    return math.log1p(math.exp(2 * log_sigma))


# a = |m|^2 / sigma^2 at which the mixture is half decided (E tanh^2 = 1/2).
MIXTURE_HALF_DECIDED_A = float(optimize.brentq(lambda a: mixture_decided(a) - 0.5, 1e-3, 10.0))


@dataclass
class TwoPointMixture:
    """x0 = ±m + sqrt(noise) g with equal weights, m a constant field with |m|^2 = ``m2``, g white Gaussian noise.

    Exact denoiser (docs/design.md §7), with s = noise + sigma^2:
    D(y) = noise/s y + sigma^2/s m tanh(<m, y> / s); noise = 0 gives m tanh(<m, y> / sigma^2). At y = 0,
    J = noise/s I + sigma^2/s^2 m m^T, so along the DC mode s_DC = sigma^2/s (1 - |m|^2/s) turns negative at
    t_c = log(1 + |m|^2 - noise). Every mode orthogonal to m is Gaussian white noise of power ``noise``: no
    transition there (the negative control inside a positive one, Biroli et al. 2024's setting).
    """

    size: int = 32
    channels: int = 1
    m2: float = 16.0
    noise: float = 0.0
    name: str = "mixture"

    def __post_init__(self) -> None:
        check_field(self.name, self.size, self.channels)
        check_option(self.name, "m2", self.m2, 0, strict=True)
        check_option(self.name, "noise", self.noise, 0)
        if self.noise >= self.m2:
            raise UserError(f"builtin:mixture needs noise < m2 (two classes apart), got noise={self.noise}, "
                            f"m2={self.m2}", "lower noise or raise m2")

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.channels, self.size, self.size)

    @property
    def mean(self) -> torch.Tensor:
        numel = self.channels * self.size * self.size
        return torch.full(self.shape, math.sqrt(self.m2 / numel))

    @property
    def decision_t(self) -> float:
        """The DC mode's decision time along trajectories: where its decided fraction is 1/2 (docs/design.md §7)."""
        if self.noise == 0:
            return math.log1p(self.m2 / MIXTURE_HALF_DECIDED_A)
        return _half_decided_t(lambda sigma: noisy_mixture_decided(self.m2, self.noise, sigma))

    def __call__(self, y: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        m = self.mean.to(y.device, y.dtype)
        s = self.noise + sigma.to(y.dtype).view(-1, 1, 1, 1) ** 2
        overlap = (y * m).flatten(1).sum(1).view(-1, 1, 1, 1) / s
        return self.noise / s * y + (1 - self.noise / s) * torch.tanh(overlap) * m

    def theory(self, sigmas: list[float], directions: ProbeDirections) -> dict:
        projection2 = (directions.vectors.double().flatten(1) @ self.mean.double().flatten()) ** 2
        curves = [_shell_means(s**2 / (self.noise + s**2) * (1 - projection2 / (self.noise + s**2)), directions)
                  for s in sigmas]
        t_c = math.log1p(self.m2 - self.noise)
        dc = self.decision_t
        others = math.log1p(self.noise) if self.noise > 0 else None  # white noise: P = noise in every bin
        return {"critical_t": t_c, "stiffness": curves, "exact_everywhere": False,
                "formula": "at y = 0: s = sigma^2/s' (1 - <v, m>^2 / s'), s' = noise + sigma^2; t_c = log(1 + |m|^2 "
                           "- noise); along trajectories the DC mode's decided fraction is E tanh^2(a + sqrt(a) z), "
                           "a = |m|^2 / sigma^2 (noise = 0; docs/design.md §7 otherwise), every other mode is "
                           "Gaussian of power noise",
                "markers": {"stiffness_zero": t_c, "instability_onset": t_c},
                "decision_by_shell": [dc] + [others] * (directions.n_shells - 1)}

    def describe(self) -> dict:
        return {"size": self.size, "channels": self.channels, "m2": self.m2, "noise": self.noise,
                "mean": "constant field, |m|^2 = m2; within-class white noise of variance noise per pixel"}
