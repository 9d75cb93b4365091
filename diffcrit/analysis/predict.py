"""``predict``: what the data alone says about the critical time (docs/design.md §1, §3, §6).

From one streamed pass over a data set (``datasets.DataSource``):
  1. moments: pixel sums, Fourier sums (power spectrum), lag products (patch correlation) and,
     for up to ``COVARIANCE_LIMIT`` features, the full second-moment matrix;
  2. Λ, the top eigenvalue of the data covariance (full matrix, or block power iteration with
     further passes above the limit) and the speciation time t_s = log(1 + Λ);
  3. the radially averaged power spectrum and the Gaussian-model stiffness s = sigma^2/(P + sigma^2)
     at analyze's probe directions, averaged per shell as the probes are;
  4. with a patch side p: C(δ), C_Ω(0), and the patch model's t_c = log(1 + C_Ω(0)) and stiffness at y = 0;
  5. with a measured analyze result: its curves and critical time beside the predictions.
Symbols as in ``diffcrit.spectral.theory``. Nothing here prints; ``progress`` gets ``ProgressEvent``s.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

from ..spectral import theory
from ..config import AnalyzeConfig, allowed, check_allowed, check_karras
from ..models.datasets import DataSource
from ..errors import UserError
from ..spectral.fourier import ProbeDirections, fourier_sums, plane_wave_directions, shell_wave_numbers, spectrum
from ..frame import karras_sigmas, sigma_to_t
from ..progress import POWER_ITERATION, READING, Callback, ProgressEvent, ignore

COVARIANCE_LIMIT = 4096  # features C*H*W up to which the full covariance is accumulated (128 MiB)
POWER_BLOCK, POWER_PASSES, POWER_TOL = 8, 60, 1e-7

FRAMES_NOTE = (
    "Biroli et al. (2024) run the OU process dx = -x dt + sqrt(2) dW, x = e^{-t_B} x0 + sqrt(1 - e^{-2 t_B}) z, "
    "and give the speciation time t_B = (1/2) log(Lambda): the large-Lambda form of (1/2) log(1 + Lambda), where "
    "the signal variance along the top principal component, Lambda e^{-2 t_B}, equals the noise variance "
    "1 - e^{-2 t_B}. diffcrit's OU process dx = -x/2 dt + dW runs at half that speed: t = 2 t_B = log(1 + sigma^2), "
    "so the same instant is t_s = log(1 + Lambda), sigma_s^2 = Lambda (docs/design.md §2). For a two-point mixture "
    "±m, Lambda = |m|^2 and t_s equals its exact critical time log(1 + |m|^2).")


@dataclass
class Moments:
    """Streaming sufficient statistics of a data set; ``update`` with batches (b, C, H, W)."""

    shape: tuple[int, int, int]
    full_covariance: bool
    count: int = 0
    sum_x: torch.Tensor | None = None  # (C, H, W)
    sum_f: torch.Tensor | None = None  # (C, H, W) complex, fourier.fourier_sums
    sum_f2: torch.Tensor | None = None  # (C, H, W)
    lags: torch.Tensor | None = None  # (C, C, H, W), theory.lag_product_sums
    gram: torch.Tensor | None = None  # (d, d) Σ x x^T when full_covariance
    low: float = math.inf
    high: float = -math.inf

    def update(self, batch: torch.Tensor) -> None:
        x = batch.double()
        f, f2 = fourier_sums(spectrum(x))
        parts = {"sum_x": x.sum(0), "sum_f": f, "sum_f2": f2, "lags": theory.lag_product_sums(x)}
        if self.full_covariance:
            flat = x.flatten(1)
            parts["gram"] = flat.T @ flat
        for name, value in parts.items():
            current = getattr(self, name)
            setattr(self, name, value if current is None else current + value)
        self.count += x.shape[0]
        self.low, self.high = min(self.low, float(x.min())), max(self.high, float(x.max()))

    @property
    def mean(self) -> torch.Tensor:
        return self.sum_x / self.count


@dataclass
class Grid:
    """Where the curves are evaluated: noise levels (generation order) and analyze's probe set."""

    sigmas: list[float]
    shells: int
    directions: int
    source: str = "default Karras schedule of analyze"
    probe: ProbeDirections | None = field(default=None, repr=False)


def default_grid(shape: tuple[int, int, int], steps: int | None = None, shells: int | None = None,
                 directions: int | None = None, sigma_min: float | None = None, sigma_max: float | None = None,
                 rho: float | None = None) -> Grid:
    """analyze's sampler grid and probe set (defaults from config.AnalyzeConfig): a Karras schedule."""
    base = AnalyzeConfig()
    steps, shells = _given(steps, base.steps), _given(shells, base.shells)
    directions = _given(directions, base.directions)
    sigma_min, sigma_max = _given(sigma_min, base.sigma_min), _given(sigma_max, base.sigma_max)
    rho = _given(rho, base.rho)
    for name, value in (("steps", steps), ("shells", shells), ("directions", directions)):
        check_allowed(name, value, allowed(AnalyzeConfig, name))
    check_karras(sigma_min, sigma_max, rho)
    sigmas = karras_sigmas(steps, sigma_min, sigma_max, rho).tolist()
    return _with_probe(Grid(sigmas, shells, directions,
                            f"Karras schedule: {steps} steps, sigma {sigma_min}..{sigma_max}, rho {rho}"), shape)


def grid_from_result(result: dict, shape: tuple[int, int, int]) -> Grid:
    """The noise levels, shells and directions of a measured analyze result (same lattice required)."""
    model_shape = tuple(result["model"]["shape"])
    if model_shape != tuple(shape):
        raise UserError(f"the compared result's model works on {_dims(model_shape)}, the data is {_dims(shape)}",
                        "predict on data of the model's own shape")
    config = result.get("config", {})
    base = AnalyzeConfig()
    grid = Grid([float(step["sigma"]) for step in result["steps"]], int(config.get("shells", base.shells)),
                int(config.get("directions", base.directions)), "the compared result's steps and probe set")
    return _with_probe(grid, shape)


def _given(value, default):
    return default if value is None else value


def _with_probe(grid: Grid, shape: tuple[int, int, int]) -> Grid:
    grid.probe = plane_wave_directions(shape, grid.shells, grid.directions)
    return grid


def _dims(shape: tuple[int, ...]) -> str:
    return "x".join(str(v) for v in shape)


# --- 1. one pass --------------------------------------------------------------------------------

def accumulate(source: DataSource, batch_size: int, progress: Callback = ignore) -> Moments:
    features = math.prod(source.shape)
    moments = Moments(source.shape, full_covariance=features <= COVARIANCE_LIMIT)
    for batch in source.batches(batch_size):
        moments.update(batch)
        progress(ProgressEvent(READING, moments.count, source.count))
    if moments.count < 2:
        raise UserError(f"`data` {source.spec} holds {moments.count} image(s)", "a covariance needs at least 2",
                        option="data")
    return moments


# --- 2. top covariance eigenvalue ---------------------------------------------------------------

def top_covariance_eigenvalue(source: DataSource, moments: Moments, batch_size: int,
                              progress: Callback = ignore) -> tuple[float, str]:
    """Λ and how it was found: exactly from the full covariance, or by block power iteration."""
    if moments.gram is not None:
        covariance = theory.covariance_from_sums(moments.sum_x.flatten(), moments.gram, moments.count)
        n = covariance.shape[0]
        return theory.top_eigenvalue(covariance), f"eigenvalues of the full {n}x{n} covariance"
    mean = moments.mean.flatten()
    generator = torch.Generator().manual_seed(0)
    basis = torch.linalg.qr(torch.randn(mean.numel(), POWER_BLOCK, generator=generator, dtype=torch.float64))[0]
    previous = -math.inf
    for passes in range(1, POWER_PASSES + 1):
        product = torch.zeros_like(basis)  # Cov @ basis, streamed
        for batch in source.batches(batch_size):
            flat = batch.double().flatten(1)
            product += flat.T @ (flat @ basis)
        product = product / moments.count - torch.outer(mean, mean @ basis)
        value = float(torch.linalg.eigvalsh(basis.T @ product)[-1])  # Rayleigh-Ritz
        basis = torch.linalg.qr(product)[0]
        progress(ProgressEvent(POWER_ITERATION, passes, POWER_PASSES))
        if abs(value - previous) <= POWER_TOL * abs(value):
            break
        previous = value
    return value, f"block power iteration ({POWER_BLOCK} vectors, {passes} passes over the data)"


# --- 3-4. predictions ---------------------------------------------------------------------------

def speciation_block(top: float, method: str) -> dict:
    return {"top_eigenvalue": top, "t": theory.speciation_time(top), "sigma": math.sqrt(max(top, 0.0)),
            "method": method, "biroli_t": theory.biroli_speciation_time(top),
            "biroli_t_in_our_time": 2 * theory.biroli_speciation_time(top),
            "formula": "t_s = log(1 + Lambda) (sigma_s^2 = Lambda)", "frames": FRAMES_NOTE}


def spectrum_block(power: torch.Tensor) -> dict:
    shells, values = theory.radial_profile(power)
    width = power.shape[-1]
    return {"shell": shells, "k": [2 * math.pi * n / width for n in shells], "P": values,
            "normalisation": "F = FFT2(x) / sqrt(H W), P = E|F|^2 - |E F|^2 per channel, averaged over channels "
                             "and the FFT bins of each shell round(|n|); mean over all k of P = per-pixel variance"}


def gaussian_block(power: torch.Tensor, grid: Grid) -> dict:
    shell_power = theory.shell_means(theory.power_at(power, grid.probe), grid.probe)
    return {"formula": "s(k) = sigma^2 / (P(k) + sigma^2), the exact stiffness of a Gaussian field with the data's "
                       "power spectrum; per shell averaged over analyze's probe directions",
            "sigma": grid.sigmas, "t": [sigma_to_t(s) for s in grid.sigmas],
            "stiffness": theory.gaussian_stiffness(power, grid.sigmas, grid.probe),
            "shell_power": shell_power, "t_half": [math.log1p(max(p, 0.0)) for p in shell_power],
            "t_half_meaning": "t at which the shell's s = 1/2 (sigma^2 = its mean power); Gaussian data have no "
                              "critical point: s stays > 0"}


def patch_block(moments: Moments, p: int, grid: Grid) -> dict:
    channels, height, width = moments.shape
    if p < 1 or p % 2 == 0 or p > min(height, width):
        raise UserError(f"`patch` must be an odd side 1 <= p <= {min(height, width)}, got {p}", option="patch")
    pixel_sums = moments.sum_x.sum((-2, -1))
    correlation = theory.patch_correlation_from_sums(moments.lags, pixel_sums, moments.count * height * width, p)
    total = theory.patch_sum(correlation)
    probe = grid.probe
    spectrum = theory.patch_spectrum(correlation, probe.freq, height, width)
    own = spectrum[torch.arange(probe.count), probe.channel, probe.channel]
    shell_sums = theory.shell_means(own, probe)
    return {"p": p, "correlation": (correlation[0, 0] if channels == 1 else correlation).tolist(),
            "C_Omega_0": total, "critical_t": theory.patch_critical_t(correlation),
            "critical_sigma": math.sqrt(max(total, 0.0)), "aligned_limit_t": math.log1p(p * p),
            "C_Omega_shells": shell_sums,
            "shell_critical_t": [math.log1p(c) if c > 0 else None for c in shell_sums],
            "sigma": grid.sigmas, "stiffness": theory.patch_stiffness(correlation, grid.sigmas, probe, height, width),
            "formula": "at y = 0: s(k) = 1 - C_Omega(k)/sigma^2, "
                       "C_Omega(k) = sum_{delta in Omega} C(delta) cos(k.delta); "
                       "t_c = log(1 + C_Omega(0)); log(1 + p^2) for fully aligned patches (docs/design.md §7)",
            "assumption": "exact for data whose patches all have the same norm (±1 images): then the softmax weights "
                          "are equal at y = 0; otherwise C is the equal-weight (large-sigma) patch covariance"}


# --- 5. beside a measurement --------------------------------------------------------------------

def compare_block(result: dict, prediction: dict, source: str) -> dict:
    """A measured analyze result's curves and critical time beside the predictions (same grid)."""
    steps = result["steps"]
    measured = [step.get("stiffness") for step in steps]
    gaussian = prediction["gaussian"]["stiffness"]
    differences = [abs(m - g) for row, grow in zip(measured, gaussian, strict=True) if row
                   for m, g in zip(row, grow, strict=True) if m is not None]
    critical = result.get("critical", {})
    markers = {name: (marker or {}).get("t") for name, marker in (critical.get("markers") or {}).items()}
    predicted_t = {"speciation": prediction["speciation"]["t"]}
    if "patch" in prediction:
        predicted_t["patch"] = prediction["patch"]["critical_t"]
    measured_t = critical.get("t")
    block = {"result": source, "model": result["model"].get("id"),
             "linearize_at": (result.get("probe") or {}).get("linearize_at"),
             "t": [step["t"] for step in steps], "sigma": [step["sigma"] for step in steps],
             "measured_stiffness": measured, "gaussian_stiffness": gaussian,
             "gaussian_max_abs_difference": max(differences) if differences else None,
             "critical_t": {"measured": measured_t, "markers": markers,
                            **{f"predicted_{k}": v for k, v in predicted_t.items()}},
             "measured_minus_predicted": {k: (None if measured_t is None else measured_t - v)
                                          for k, v in predicted_t.items()}}
    if "patch" in prediction:
        block["patch_stiffness"] = prediction["patch"]["stiffness"]
        block["patch_stiffness_note"] = ("the patch prediction holds at y = 0: "
                                         "compare it with a run made with linearize_at = zero")
        zero = markers.get("stiffness_zero")
        block["stiffness_zero_minus_patch"] = None if zero is None else zero - prediction["patch"]["critical_t"]
    return block


# --- all of it ----------------------------------------------------------------------------------

def predict(source: DataSource, grid: Grid, *, patch: int | None = None, batch_size: int = 256,
            progress: Callback | None = None) -> dict:
    """The prediction blocks (data, speciation, power_spectrum, gaussian[, patch]) for ``source``."""
    if batch_size < 1:
        raise UserError(f"`batch_size` must be >= 1, got {batch_size}", option="batch_size")
    progress = progress or ignore
    moments = accumulate(source, batch_size, progress)
    top, method = top_covariance_eigenvalue(source, moments, batch_size, progress)
    power = theory.connected_power(moments.sum_f, moments.sum_f2, moments.count)
    out = {"data": {**source.describe(), "pixel_mean": float(moments.mean.mean()),
                    "pixel_variance": float(power.mean()),  # Parseval: mean_k P = mean per-pixel variance
                    "range": [moments.low, moments.high]},
           "shells": shell_wave_numbers(source.shape[1], source.shape[2], grid.shells),
           "speciation": speciation_block(top, method),
           "power_spectrum": spectrum_block(power),
           "gaussian": gaussian_block(power, grid)}
    if patch is not None:
        out["patch"] = patch_block(moments, patch, grid)
    return out


def document(body: dict, config: dict[str, Any], compare: dict | None = None) -> dict:
    """The JSON document: schema_version 1, kind "predict" (docs/design.md §9)."""
    from ..report.document import clean, header

    doc = {**header("predict", config), **body}
    if compare is not None:
        doc["compare"] = compare
    return clean(doc)
