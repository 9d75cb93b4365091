"""The instrumented sampler follows the model's own diffusers pipeline exactly (docs/design.md §9)."""

import diffusers
import numpy as np
import pytest
import torch
from diffusers import DDIMPipeline, DDPMPipeline, DDPMScheduler, DiTPipeline, PNDMPipeline, UNet2DModel
from tiny_models import tiny_unet

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


# --------------------------------------------------------------------------------------------
# Every scheduler family, and learned variance: raw final samples against the pipeline's own


def pipeline_final(pipe, n, steps):
    """The pipeline's last ``scheduler.step`` output (raw, before (x/2 + 0.5).clamp(0, 1)), NCHW."""
    step, last = pipe.scheduler.step, {}

    def recording(*args, **kwargs):
        out = step(*args, **kwargs)
        last["x"] = out.prev_sample
        return out

    pipe.scheduler.step = recording
    pipe(batch_size=n, generator=generators(n), num_inference_steps=steps, output_type="np")
    return last["x"]


def assert_same_final(folder, pipe, steps=8, n=3):
    result = diffcrit.analyze(str(folder), steps=steps, samples=n, device="cpu", **ANALYSIS)
    torch.testing.assert_close(result.samples, pipeline_final(pipe, n, steps).float(), atol=1e-4, rtol=0)


# DDPMPipeline passes generator= to scheduler.step: the VP schedulers whose step takes one.
DDPM_PIPELINE = ["DDIMScheduler", "DPMSolverMultistepScheduler", "DPMSolverSinglestepScheduler", "LCMScheduler",
                 "TCDScheduler", "SASolverScheduler", "DDPMParallelScheduler", "DDIMParallelScheduler"]
# PNDMPipeline calls scheduler.step without one: the deterministic VP schedulers whose step takes none.
PNDM_PIPELINE = ["PNDMScheduler", "DEISMultistepScheduler", "UniPCMultistepScheduler"]


def save_pipeline(folder, pipeline_cls, scheduler, unet=None):
    pipeline_cls(unet=unet or tiny_unet(), scheduler=scheduler).save_pretrained(folder)
    return folder


@pytest.mark.parametrize("name", DDPM_PIPELINE)
def test_ddpm_pipeline_with_each_scheduler(name, tmp_path):
    scheduler = getattr(diffusers, name)(num_train_timesteps=100)
    folder = save_pipeline(tmp_path / name, DDPMPipeline, scheduler)
    assert_same_final(folder, DDPMPipeline.from_pretrained(folder))


@pytest.mark.parametrize("name", PNDM_PIPELINE)
def test_pndm_pipeline_with_each_scheduler(name, tmp_path):
    """PNDM's pseudo Runge-Kutta warm-up evaluates the model several times per step; each is one record."""
    scheduler = getattr(diffusers, name)(num_train_timesteps=100)
    folder = save_pipeline(tmp_path / name, PNDMPipeline, scheduler)
    assert_same_final(folder, PNDMPipeline.from_pretrained(folder))


def test_pndm_records_every_evaluation(tmp_path):
    folder = save_pipeline(tmp_path / "pndm", PNDMPipeline, diffusers.PNDMScheduler(num_train_timesteps=100))
    result = diffcrit.analyze(str(folder), steps=8, samples=1, device="cpu", **ANALYSIS).to_dict()
    scheduler = diffusers.PNDMScheduler(num_train_timesteps=100)
    scheduler.set_timesteps(8)
    assert [s["timestep"] for s in result["steps"]] == scheduler.timesteps.tolist()  # 8 steps, 15 evaluations


def learned_variance_unet():
    torch.manual_seed(0)
    return UNet2DModel(sample_size=8, in_channels=1, out_channels=2, block_out_channels=(8, 16), layers_per_block=1,
                       norm_num_groups=4, down_block_types=("DownBlock2D", "DownBlock2D"),
                       up_block_types=("UpBlock2D", "UpBlock2D")).eval()


def test_learned_variance_unet_equals_ddpm_pipeline(tmp_path):
    """The scheduler gets all 2C channels, as DDPMPipeline passes them; D reads the first C. ("learned"
    takes the raw channel as a variance: NaN for a random network, in the pipeline too.)"""
    scheduler = DDPMScheduler(num_train_timesteps=100, variance_type="learned_range")
    folder = save_pipeline(tmp_path / "lv", DDPMPipeline, scheduler, learned_variance_unet())
    assert_same_final(folder, DDPMPipeline.from_pretrained(folder))


def test_learned_variance_denoiser_reads_the_mean_channels(tmp_path):
    from diffcrit.config import make_config
    from diffcrit.models.loading import load_model

    folder = save_pipeline(tmp_path / "lv", DDPMPipeline, DDPMScheduler(num_train_timesteps=100,
                                                                        variance_type="learned_range"),
                           learned_variance_unet())
    loaded = load_model(str(folder), make_config(device="cpu"), make_config())
    y, sigma, t = torch.randn(2, 1, 8, 8), torch.full((2,), 1.5), torch.tensor([40.0, 40.0])
    eps = loaded.module(y / (1 + 1.5**2) ** 0.5, t).sample[:, :1]
    torch.testing.assert_close(loaded.denoiser(y, sigma, t), y - 1.5 * eps)
    assert loaded.denoiser.model_output(y, t).shape[1] == 2  # what the scheduler is given


def reference_loop(unet, scheduler, n, steps):
    """The denoising loop of diffusers' StableDiffusionPipeline without text or guidance: no unconditional
    pipeline takes VE, EDM or flow-matching schedulers (init_noise_sigma, scale_model_input, step kwargs)."""
    import inspect

    from diffusers.utils.torch_utils import randn_tensor

    gens = generators(n)
    x = randn_tensor((n, 1, 8, 8), generator=gens) * getattr(scheduler, "init_noise_sigma", 1.0)
    scheduler.set_timesteps(steps)
    extra = {"generator": gens} if "generator" in inspect.signature(scheduler.step).parameters else {}
    with torch.no_grad():
        for t in scheduler.timesteps:
            model_input = scheduler.scale_model_input(x, t) if hasattr(scheduler, "scale_model_input") else x
            x = scheduler.step(unet(model_input, t).sample, t, x, **extra).prev_sample
    return x


@pytest.mark.parametrize("name", ["LMSDiscreteScheduler", "EulerDiscreteScheduler", "EulerAncestralDiscreteScheduler",
                                  "HeunDiscreteScheduler", "KDPM2DiscreteScheduler", "KDPM2AncestralDiscreteScheduler",
                                  "EDMEulerScheduler",
                                  "EDMDPMSolverMultistepScheduler", "FlowMatchEulerDiscreteScheduler",
                                  "FlowMatchHeunDiscreteScheduler"])
def test_scaled_input_schedulers_equal_the_pipeline_loop(name, tmp_path):
    cls = getattr(diffusers, name)
    scheduler = cls() if name.startswith(("EDM", "FlowMatch")) else cls(num_train_timesteps=100)
    folder = save_pipeline(tmp_path / name, DDPMPipeline, scheduler)
    result = diffcrit.analyze(str(folder), steps=6, samples=3, device="cpu", **ANALYSIS)
    pipe = DDPMPipeline.from_pretrained(folder)
    expected = reference_loop(pipe.unet, pipe.scheduler, 3, 6)
    torch.testing.assert_close(result.samples, expected.float(), atol=1e-4, rtol=0)


def test_stable_diffusion_with_pndm_equals_its_pipeline(tmp_path):
    """SD 1.x's own scheduler (PNDM, with its warm-up evaluations) and a prompt: diffcrit's final latents equal
    StableDiffusionPipeline's for the same per-sample generators, no classifier-free guidance."""
    import json

    from transformers import CLIPTextModel, CLIPTokenizer

    from tiny_models import save_sd_pipeline, tiny_vae

    folder = save_sd_pipeline(tmp_path / "sd")
    # SD 1.5's own scheduler config but an outdated steps_offset: the pipeline rewrites it to 1, and so does diffcrit
    scheduler = diffusers.PNDMScheduler(num_train_timesteps=100, beta_schedule="scaled_linear", skip_prk_steps=True,
                                        set_alpha_to_one=False, steps_offset=0)
    scheduler.save_pretrained(folder / "scheduler")
    index = json.loads((folder / "model_index.json").read_text())
    (folder / "model_index.json").write_text(json.dumps({**index, "scheduler": ["diffusers", "PNDMScheduler"]}))
    result = diffcrit.analyze(str(folder), prompt="a red barn", steps=5, samples=2, bootstrap=0, device="cpu",
                              probe_schedule="every", probe_every=100)
    assert [s.get("index") for s in result.to_dict()["steps"]][:3] == [0, 1, 2]
    assert diffusers.PNDMScheduler.from_pretrained(folder / "scheduler").config.steps_offset == 0  # folder untouched
    pipe = diffusers.StableDiffusionPipeline(
        vae=tiny_vae(), text_encoder=CLIPTextModel.from_pretrained(folder / "text_encoder"),
        tokenizer=CLIPTokenizer.from_pretrained(folder / "tokenizer"),
        unet=diffusers.UNet2DConditionModel.from_pretrained(folder / "unet"), scheduler=scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    size = 8 * pipe.vae_scale_factor
    latents = pipe(prompt=["a red barn"] * 2, num_inference_steps=5, guidance_scale=1.0, height=size, width=size,
                   generator=generators(2), output_type="latent").images
    assert result.samples.shape == latents.shape == (2, 4, 8, 8)
    np.testing.assert_allclose(result.samples.numpy(), latents.float().numpy(), rtol=0, atol=1e-4)
