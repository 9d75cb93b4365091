"""The patch (local empirical) denoiser and its theory (docs/design.md §7, diffcrit.spectral.theory)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.func import jvp

import diffcrit
from diffcrit.spectral import theory
from diffcrit.models.builtins import make_analytic, parse_spec
from diffcrit.models.builtins.analytic import GaussianField
from diffcrit.models.builtins.patch import PatchModel, extract_patches
from diffcrit.spectral.fourier import plane_wave_directions

TINY = dict(L=6, p=3, random=2, aligned=1, xi=1.0, seed=3)


def naive_denoiser(model: PatchModel, y: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """D_i(y) = Σ_μ softmax_μ(-||y_Ω(i) - P^μ||^2 / 2 sigma^2) P^μ_0 with loops over pixels and
    every training patch listed once per position (no merging of duplicates)."""
    b, _, h, w = y.shape
    r = model.p // 2
    patches = []
    for image in model.images.double():
        for jy in range(h):
            for jx in range(w):
                patches.append(torch.stack([image[0, (jy + dy) % h, (jx + dx) % w]
                                            for dy in range(-r, r + 1) for dx in range(-r, r + 1)]))
    patches = torch.stack(patches)
    out = torch.zeros_like(y)
    for n in range(b):
        for iy in range(h):
            for ix in range(w):
                q = torch.stack([y[n, 0, (iy + dy) % h, (ix + dx) % w]
                                 for dy in range(-r, r + 1) for dx in range(-r, r + 1)])
                weights = torch.softmax(-((q - patches) ** 2).sum(1) / (2 * sigma[n] ** 2), 0)
                out[n, 0, iy, ix] = (weights * patches[:, model.p * model.p // 2]).sum()
    return out


def test_denoiser_equals_naive_loop_with_merged_duplicates():
    model = PatchModel(**TINY)
    assert model.patches.shape[0] < model.counts.sum()  # duplicates were merged
    y = torch.randn(3, 1, 6, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 1.5
    sigma = torch.tensor([0.3, 1.0, 4.0], dtype=torch.float64)
    assert torch.allclose(model(y, sigma), naive_denoiser(model, y, sigma), atol=1e-12, rtol=0)


def test_chunking_and_batch_size_do_not_change_the_output(monkeypatch):
    model = PatchModel(L=8, p=3, random=2, xi=1.5)
    y = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    sigma = torch.tensor([0.2, 0.7, 2.0, 9.0])
    whole = model(y, sigma)
    monkeypatch.setattr(PatchModel, "block", 97)  # a chunk of one row, ragged last chunk
    assert torch.allclose(model(y, sigma), whole, atol=1e-6)
    assert torch.allclose(torch.cat([model(y[i : i + 1], sigma[i : i + 1]) for i in range(4)]), whole, atol=1e-6)


def test_training_set_is_seeded_zero_mean_plus_minus_one():
    model = PatchModel(L=16, p=5, random=3, aligned=2, xi=2.0, seed=7)
    assert model.images.shape == (3 + 4, 1, 16, 16)
    assert set(model.images.unique().tolist()) == {-1.0, 1.0}
    assert model.images.flatten(1).sum(1).abs().max() in (0.0, 16 * 16)  # random: balanced; aligned: ±all
    assert float(model.images.sum()) == 0.0
    assert torch.equal(model.images, PatchModel(L=16, p=5, random=3, aligned=2, xi=2.0, seed=7).images)
    assert not torch.equal(model.images, PatchModel(L=16, p=5, random=3, aligned=2, xi=2.0, seed=8).images)


@pytest.mark.parametrize("p", [3, 5, 7])
def test_aligned_patches_merge_to_two_and_give_the_papers_formula(p):
    model = PatchModel(L=12, p=p, random=0, aligned=1)
    assert model.patches.shape[0] == 2 and model.counts.tolist() == [144, 144]
    assert torch.allclose(model.correlation, torch.ones(1, 1, p, p, dtype=torch.float64))
    directions = plane_wave_directions(model.shape, 2, 2)
    assert math.isclose(model.theory([1.0], directions)["critical_t"], math.log1p(p * p), rel_tol=1e-12)


def test_jacobian_at_zero_is_the_patch_covariance_over_sigma_squared():
    """J(0) = C(δ)/sigma^2 on Ω (autograd), and <v_k, J v_k> = C_Ω(k)/sigma^2 for every plane wave."""
    model = PatchModel(L=8, p=3, random=2, aligned=1, xi=1.0)
    sigma = 1.7
    jacobian = torch.autograd.functional.jacobian(
        lambda z: model(z.view(1, 1, 8, 8), torch.tensor([sigma], dtype=torch.float64)).flatten(),
        torch.zeros(64, dtype=torch.float64))
    offsets = theory.patch_offsets(3)
    expected = torch.zeros(64, 64, dtype=torch.float64)
    for i in range(64):
        iy, ix = divmod(i, 8)
        for (dy, dx), c in zip(offsets.tolist(), model.correlation[0, 0].flatten().tolist(), strict=True):
            expected[i, ((iy + dy) % 8) * 8 + (ix + dx) % 8] += c / sigma**2
    assert torch.allclose(jacobian, expected, atol=1e-12)
    directions = plane_wave_directions(model.shape, 5, 8)
    vectors = directions.vectors.double().flatten(1)
    vectors = vectors / vectors.norm(dim=1, keepdim=True)
    gains = ((vectors @ jacobian) * vectors).sum(1)
    predicted = theory.patch_spectrum(model.correlation, directions.freq, 8, 8)[:, 0, 0] / sigma**2
    assert torch.allclose(gains, predicted, atol=1e-12)


def test_patch_correlation_matches_a_direct_average_over_patches():
    model = PatchModel(L=8, p=5, random=2, aligned=1, xi=1.0)
    patches = extract_patches(model.images.double(), 5).reshape(-1, 25)
    centred = patches - patches.mean(0)
    direct = (centred[:, 12:13] * centred).mean(0).view(5, 5)  # Cov(P_0, P_δ) over all patches
    assert torch.allclose(model.correlation[0, 0], direct, atol=1e-12)


def test_forward_ad_matches_autograd_away_from_zero():
    model = PatchModel(L=6, p=3, random=2, aligned=1, xi=1.0)
    y = torch.randn(1, 1, 6, 6, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    v = torch.randn(1, 1, 6, 6, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    sigma = torch.tensor([0.8], dtype=torch.float64)
    _, forward = jvp(lambda z: model(z, sigma), (y,), (v,))
    jacobian = torch.autograd.functional.jacobian(lambda z: model(z.view(1, 1, 6, 6), sigma).flatten(), y.flatten())
    assert torch.allclose(forward.flatten(), jacobian @ v.flatten(), atol=1e-10)


def test_registry_options_and_bad_values():
    entry, options = parse_spec("builtin:patch?p=3&L=16&random=1&xi=2.5")
    assert entry.name == "patch" and options == {"p": 3, "L": 16, "random": 1, "xi": 2.5}
    assert make_analytic("builtin:patch?p=3&L=16").shape == (1, 16, 16)
    with pytest.raises(ValueError, match="odd patch side"):
        PatchModel(L=16, p=4)
    with pytest.raises(ValueError, match="not both 0"):
        PatchModel(random=0, aligned=0)


def test_gaussian_stiffness_equals_the_gaussian_builtins_theory():
    field = GaussianField(size=16, xi=3.0)
    directions = plane_wave_directions(field.shape, 4, 4)
    sigmas = [0.1, 1.0, 5.0]
    ours = theory.gaussian_stiffness(field.spectrum[None], sigmas, directions)
    assert np.allclose(ours, field.theory(sigmas, directions)["stiffness"], atol=1e-12, rtol=0)


def test_speciation_time_frames():
    assert theory.speciation_time(16.0) == pytest.approx(math.log(17.0))
    # Biroli et al.'s t_B = ½ log Λ is half of our log Λ, the large-Λ form of log(1 + Λ).
    assert 2 * theory.biroli_speciation_time(1e6) == pytest.approx(theory.speciation_time(1e6), rel=1e-6)


@pytest.mark.parametrize("p", [3, 5, 7])
def test_measured_stiffness_zero_matches_log_one_plus_c_omega(p):
    """The paper's result (docs/design.md §7): at y = 0 the DC mode turns unstable at t_c = log(1 + C_Ω(0))."""
    result = diffcrit.analyze(f"builtin:patch?p={p}&L=16", steps=50, samples=2, linearize_at="zero",
                              bootstrap=0).to_dict()
    predicted = math.log1p(PatchModel(L=16, p=p).theory([1.0], plane_wave_directions((1, 16, 16), 2, 1))["C_Omega_0"])
    assert result["theory"]["critical_t"] == pytest.approx(predicted, rel=1e-12)
    measured = result["critical"]["markers"]["stiffness_zero"]["t"]
    assert measured == pytest.approx(predicted, rel=0.02)
    assert result["theory"]["measured_minus_predicted"]["stiffness_max_rel"] < 1e-4  # every step, every shell
