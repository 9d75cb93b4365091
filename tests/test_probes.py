"""JVP and finite differences agree through attention UNets, conditional UNets and DiT (docs/design.md §3)."""

import numpy as np
import pytest
import torch
from diffusers import DDPMScheduler

from diffcrit.models.denoisers import DiffusersDenoiser
from diffcrit.spectral.fourier import plane_wave_directions
from diffcrit.probing.probes import fd_columns, forward_ad_safe, jvp_columns, mode_gains
from tiny_models import tiny_cond_unet, tiny_dit, tiny_unet

ALPHAS = DDPMScheduler(num_train_timesteps=100).alphas_cumprod


def _cases():
    return {
        "unet_attention": (tiny_unet(), (1, 8, 8), None),
        "unet_class": (tiny_unet(num_class_embeds=5), (1, 8, 8), {"class_labels": torch.tensor([2, 4])}),
        "unet_condition": (tiny_cond_unet(), (4, 8, 8), {
            "encoder_hidden_states": torch.randn(2, 3, 12, generator=torch.Generator().manual_seed(1))}),
        "dit": (tiny_dit(), (4, 8, 8), {"class_labels": torch.tensor([1, 7])}),
    }


@pytest.mark.parametrize("name", ["unet_attention", "unet_class", "unet_condition", "dit"])
def test_jvp_equals_finite_differences(name):
    model, shape, cond = _cases()[name]
    denoiser = DiffusersDenoiser(model, "epsilon", ALPHAS)
    points = torch.randn(2, *shape, generator=torch.Generator().manual_seed(0)) * 1.5
    directions = plane_wave_directions(shape, 3, 2).vectors
    rows = torch.arange(2).repeat_interleave(len(directions))
    tangents = directions.repeat(2, 1, 1, 1)
    sigma, timestep = 1.2, 40

    def denoise_at(z, r):
        picked = None if cond is None else {k: v[r] for k, v in cond.items()}
        return denoiser(z, torch.full((len(z),), sigma), torch.full((len(z),), timestep), picked)

    with forward_ad_safe(model):
        by_jvp = jvp_columns(denoise_at, points, rows, tangents)
    with torch.no_grad():
        by_fd = fd_columns(denoise_at, points, rows, tangents, torch.full((2,), 5e-3 * (1 + sigma**2) ** 0.5))
    relative = (by_jvp - by_fd).flatten(1).norm(dim=1) / by_jvp.flatten(1).norm(dim=1)
    assert relative.max() < 1e-3, relative.max()
    gains = mode_gains(denoise_at, points, directions, "jvp", 5e-3, sigma, batch=7, module=model)
    gains_fd = mode_gains(denoise_at, points, directions, "fd", 5e-3, sigma, batch=5, module=model)
    torch.testing.assert_close(gains, gains_fd, atol=1e-3, rtol=1e-3)


def test_forward_ad_fails_without_the_workarounds():
    """The blockers are real (so the workarounds are needed): fused SDPA has no forward derivative."""
    model = tiny_unet()
    with pytest.raises((RuntimeError, NotImplementedError)):
        torch.func.jvp(lambda z: model(z, 10).sample, (torch.randn(1, 1, 8, 8),), (torch.randn(1, 1, 8, 8),))


def test_gains_of_a_linear_map_are_exact():
    """For D(y) = a y, every gain is a, by both methods."""
    directions = plane_wave_directions((2, 8, 8), 3, 3).vectors
    points = torch.randn(3, 2, 8, 8)
    for method in ("jvp", "fd"):
        gains = mode_gains(lambda z, r: 0.3 * z, points, directions, method, 5e-3, 2.0, batch=4)
        torch.testing.assert_close(gains, torch.full_like(gains, 0.3), atol=1e-5, rtol=0)


class _NoForwardAD(torch.autograd.Function):
    """Identity with a backward but no forward-mode rule (like a fused kernel)."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad


def test_auto_falls_back_to_finite_differences_and_records_why():
    import diffcrit

    def fused(y, sigma):
        return _NoForwardAD.apply(y) / (1 + sigma.view(-1, 1, 1, 1) ** 2)

    document = diffcrit.analyze(fused, shape=(1, 8, 8), steps=6, samples=2, bootstrap=0,
                                probe_schedule="every").to_dict()
    assert document["environment"]["probe_method"] == "fd"
    assert "forward AD failed" in document["environment"]["probe_note"]
    for step in document["steps"]:  # and the FD values are right: s = sigma^2 / (1 + sigma^2)
        expected = step["sigma"] ** 2 / (1 + step["sigma"] ** 2)
        assert step["stiffness"] == pytest.approx([expected] * 4, abs=2e-3)
    with pytest.raises(diffcrit.UserError, match="`probe` jvp"):  # forced JVP: one clear line, no traceback
        diffcrit.analyze(fused, shape=(1, 8, 8), steps=3, samples=1, bootstrap=0, probe="jvp")


@pytest.mark.parametrize("name", ["unet_attention", "unet_condition", "dit"])
def test_shared_primal_vmap_equals_the_batched_jvp(name):
    from diffcrit.probing.probes import jvp_columns_shared

    model, shape, cond = _cases()[name]
    denoiser = DiffusersDenoiser(model, "epsilon", ALPHAS)
    points = torch.randn(2, *shape, generator=torch.Generator().manual_seed(3))
    directions = plane_wave_directions(shape, 3, 2).vectors
    rows = torch.arange(2).repeat_interleave(len(directions))
    tangents = directions.repeat(2, 1, 1, 1)

    def denoise_at(z, r):
        picked = None if cond is None else {k: v[r] for k, v in cond.items()}
        return denoiser(z, torch.full((len(z),), 0.7), torch.full((len(z),), 20), picked)

    with forward_ad_safe(model):
        torch.testing.assert_close(jvp_columns_shared(denoise_at, points, rows, tangents),
                                   jvp_columns(denoise_at, points, rows, tangents), atol=1e-5, rtol=1e-4)


def test_auto_probes_networks_by_finite_differences_that_agree_with_jvp():
    """auto = FD for a network (here the trained default model), JVP for callables; FD's stiffness is JVP's to 3e-4."""
    import diffcrit

    options = dict(steps=12, samples=3, probe_samples=2, probe_schedule="every", bootstrap=0)
    auto = diffcrit.analyze("builtin:textures", **options).to_dict()
    exact = diffcrit.analyze("builtin:textures", probe="jvp", **options).to_dict()
    assert auto["environment"]["probe_method"] == "fd" and auto["environment"]["probe_note"].startswith("auto:")
    assert exact["environment"]["probe_method"] == "jvp"
    fd_s = np.array([step["stiffness"] for step in auto["steps"]])
    jvp_s = np.array([step["stiffness"] for step in exact["steps"]])
    assert np.abs(jvp_s).max() > 0.1  # the curves carry signal
    np.testing.assert_allclose(fd_s, jvp_s, rtol=0, atol=3e-4)
    analytic = diffcrit.analyze("builtin:gaussian?size=8", steps=3, samples=1, bootstrap=0).to_dict()
    assert analytic["environment"]["probe_method"] == "jvp" and "probe_note" not in analytic["environment"]


def test_a_vmap_failure_is_remembered_per_module_and_goes_with_it(monkeypatch):
    import gc

    from diffcrit.probing import probes

    tried = []

    def no_batching_rule(*args):
        tried.append(1)
        raise RuntimeError("no batching rule")

    monkeypatch.setattr(probes, "jvp_columns_shared", no_batching_rule)
    points, directions = torch.randn(2, 1, 4, 4), plane_wave_directions((1, 4, 4), 2, 1).vectors

    def gains(module):
        return mode_gains(lambda z, r: 0.5 * z, points, directions, "jvp", 5e-3, 1.0, batch=100, module=module)

    module = torch.nn.Linear(1, 1)
    for _ in range(2):  # the second call goes straight to the repeated-batch form
        torch.testing.assert_close(gains(module), torch.full((2, len(directions)), 0.5, dtype=torch.float64))
    assert len(tried) == 1 and module in probes._NO_VMAP
    del module
    gc.collect()
    gains(torch.nn.Linear(1, 1))  # a new module (whatever its id) is tried with vmap again
    gains(None)
    gains(None)  # no module: nothing to remember, vmap is tried every call
    assert len(tried) == 4
