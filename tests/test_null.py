"""The Gaussian null sampled by the model's own sampler (docs/design.md §6a, diffcrit/sampling/null.py).

frame.output inverts frame.denoised for every frame; on a Gaussian model sampled deterministically the null
reproduces the model's decided fraction exactly; through diffusers schedulers of every family (VP ancestral,
VE / EDM, flow matching with its pure-noise evaluation) the null runs with the model's steps and seeds.
"""

import pytest
import torch
from diffusers import EDMEulerScheduler

import diffcrit
from diffcrit.models.builtins import make_analytic
from diffcrit.models.schedulers import AlphaBarFrame, EDMFrame, FlowFrame
from diffcrit.sampling.null import GaussianDenoiser, null_stepper_factory, sample_spectrum
from tiny_transformers import save_sd3_pipeline

FAST = dict(steps=8, samples=8, bootstrap=10, probe_schedule="every", probe_every=8)


@pytest.mark.parametrize("frame", [AlphaBarFrame("epsilon", torch.linspace(0.99, 0.01, 1000)),
                                   AlphaBarFrame("v_prediction", torch.linspace(0.99, 0.01, 1000)),
                                   AlphaBarFrame("sample", torch.linspace(0.99, 0.01, 1000)),
                                   FlowFrame(1000), EDMFrame(EDMEulerScheduler())], ids=lambda f: type(f).__name__)
def test_frame_output_inverts_denoised(frame):
    torch.manual_seed(0)
    y, d, sigma = torch.randn(3, 2, 4, 4), torch.randn(3, 2, 4, 4), torch.tensor([0.3, 2.0, 9.0])
    assert torch.allclose(frame.denoised(frame.output(d, y, sigma), y, sigma), d, atol=1e-5)


def test_gaussian_denoiser_is_the_exact_one():
    model = make_analytic("builtin:gaussian?size=8")
    null = GaussianDenoiser(model.spectrum[None].double())
    y, sigma = torch.randn(2, 1, 8, 8), torch.tensor([0.5, 3.0])
    assert torch.allclose(null(y, sigma), model(y, sigma), atol=1e-6)


def test_sample_spectrum_is_the_connected_power():
    samples = torch.randn(4000, 1, 4, 4) * 2.0 + 5.0
    assert sample_spectrum(samples).mean().item() == pytest.approx(4.0, rel=0.05)


def test_null_of_a_deterministically_sampled_gaussian_is_the_model_itself():
    """The same Euler steps and seeds on the same kind of denoiser: the null's decided fraction is the model's."""
    doc = diffcrit.analyze("builtin:gaussian?size=16", steps=30, samples=32, bootstrap=20).to_dict()
    assert [e["null"] for e in doc["transition"]] == ["sampled"] * 4
    # the second pass starts from P^2 / P_sampled, which matches the model's final power to first order
    assert all(abs(e["value"]) < 1e-3 for e in doc["transition"] if e["value"] is not None)
    assert doc["timing"]["null_s"] >= 0 and not doc["critical"]["found"]


@pytest.mark.parametrize("fixture", ["ddpm_folder", "ddim_folder"])
def test_null_runs_through_a_diffusers_scheduler(fixture, request):
    doc = diffcrit.analyze(str(request.getfixturevalue(fixture)), **FAST).to_dict()
    assert {e["null"] for e in doc["transition"]} == {"sampled"}


def test_null_runs_through_flow_matching_with_its_pure_noise_evaluation(tmp_path):
    doc = diffcrit.analyze(str(save_sd3_pipeline(tmp_path / "sd3")), prompt="a red barn", **FAST).to_dict()
    assert {e["null"] for e in doc["transition"]} == {"sampled"}


def test_learned_variance_falls_back_to_the_formula():
    class Config:
        variance_type = "learned_range"

    class Loaded:
        scheduler = type("S", (), {"config": Config()})()
        device = torch.device("cpu")

    assert null_stepper_factory(Loaded(), 10, torch.ones(1, 4, 4)) is None
