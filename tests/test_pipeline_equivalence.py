"""The instrumented sampler follows the model's own diffusers pipeline exactly (issue 2, docs/design.md §9)."""

import numpy as np
import pytest
import torch
from diffusers import DDIMPipeline, DDPMPipeline, DiTPipeline

import diffcrit

ANALYSIS = dict(probe_samples=1, directions=1, shells=2, bootstrap=0)


def generators(n, seed=0):
    return [torch.Generator("cpu").manual_seed(seed + i) for i in range(n)]


def pipeline_images(pipe, n, steps, **kwargs):
    """The pipeline's raw output tensor before (x/2 + 0.5).clamp(0, 1), NCHW."""
    out = pipe(batch_size=n, generator=generators(n), num_inference_steps=steps, output_type="np", **kwargs).images
    return torch.from_numpy(out).permute(0, 3, 1, 2)


@pytest.mark.parametrize("pipeline_cls,folder_fixture", [(DDPMPipeline, "ddpm_folder"), (DDIMPipeline, "ddim_folder")])
def test_final_samples_equal_pipeline(pipeline_cls, folder_fixture, request):
    folder = request.getfixturevalue(folder_fixture)
    expected = pipeline_images(pipeline_cls.from_pretrained(folder), n=3, steps=8)
    result = diffcrit.analyze(str(folder), steps=8, samples=3, device="cpu", **ANALYSIS)
    ours = (result.samples / 2 + 0.5).clamp(0, 1)
    assert ours.shape == expected.shape
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=0)


def test_dit_final_samples_equal_pipeline(dit_folder):
    pipe = DiTPipeline.from_pretrained(dit_folder)
    latents = {}
    decode = pipe.vae.decode
    pipe.vae.decode = lambda z, *a, **k: (latents.setdefault("z", z.clone()), decode(z, *a, **k))[1]
    pipe(class_labels=[3, 3], guidance_scale=1.0, generator=generators(2), num_inference_steps=6, output_type="np")
    scaled = latents["z"] * pipe.vae.config.scaling_factor  # the pipeline divides by it before decoding
    result = diffcrit.analyze(str(dit_folder), steps=6, samples=2, class_label=3, device="cpu", **ANALYSIS)
    torch.testing.assert_close(result.samples, scaled, atol=1e-5, rtol=1e-5)


def test_probing_does_not_change_the_trajectory(ddpm_folder):
    light = diffcrit.analyze(str(ddpm_folder), steps=6, samples=2, device="cpu", **ANALYSIS)
    heavy = diffcrit.analyze(str(ddpm_folder), steps=6, samples=2, device="cpu", probe_samples=2, directions=3,
                             shells=3, probe="fd", bootstrap=0)
    torch.testing.assert_close(light.samples, heavy.samples, atol=0, rtol=0)


def test_batch_size_invariance(ddpm_folder):
    options = dict(steps=6, samples=4, device="cpu", probe_samples=2, directions=2, shells=3, bootstrap=0,
                   probe_schedule="every")
    whole = diffcrit.analyze(str(ddpm_folder), batch_size=4, **options)
    split = diffcrit.analyze(str(ddpm_folder), batch_size=1, **options)
    torch.testing.assert_close(whole.samples, split.samples, atol=1e-5, rtol=0)
    for a, b in zip(whole.steps, split.steps, strict=True):
        np.testing.assert_allclose(a["stiffness"], b["stiffness"], atol=1e-4)
        assert (a["xi_denoised"] is None) == (b["xi_denoised"] is None)
        if a["xi_denoised"] is not None:
            np.testing.assert_allclose(a["xi_denoised"], b["xi_denoised"], rtol=1e-4)
        np.testing.assert_allclose(a["decided"], b["decided"], rtol=1e-6)
