"""--guidance-scale: classifier-free guidance at every step, as each family's pipeline applies it, away from the null
class or the negative prompt (--negative-prompt); the probed D(y) is the guided one."""

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")

import diffusers  # noqa: E402

import diffcrit  # noqa: E402
from diffcrit.report.document import validate_document  # noqa: E402
from cli_checks import one_line_error, run  # noqa: E402
from tiny_models import CLASSES, save_sd_pipeline, save_sdxl_pipeline, sd_pipeline  # noqa: E402

FAST = dict(steps=5, samples=2, probe_samples=1, directions=1, shells=2, bootstrap=0, device="cpu")
PROMPT, NEGATIVE = "a red barn", "blue sky"


def generators(n):
    return [torch.Generator("cpu").manual_seed(i) for i in range(n)]


@pytest.fixture(scope="module")
def sd_folder(tmp_path_factory):
    return save_sd_pipeline(tmp_path_factory.mktemp("sd"))


@pytest.fixture(scope="module")
def sdxl_folder(tmp_path_factory):
    return save_sdxl_pipeline(tmp_path_factory.mktemp("sdxl"))


def latents(pipe, **kwargs):
    size = 8 * pipe.vae_scale_factor
    return pipe(prompt=[PROMPT] * 2, num_inference_steps=FAST["steps"], height=size, width=size,
                generator=generators(2), output_type="latent", **kwargs).images.float()


@pytest.mark.parametrize("negative", [None, NEGATIVE])
def test_stable_diffusion_guided_equals_its_pipeline(sd_folder, negative):
    expected = latents(sd_pipeline(sd_folder), guidance_scale=3.0,
                       negative_prompt=None if negative is None else [negative] * 2)
    result = diffcrit.analyze(str(sd_folder), prompt=PROMPT, guidance_scale=3.0, negative_prompt=negative, **FAST)
    torch.testing.assert_close(result.samples, expected, atol=1e-4, rtol=0)
    unguided = diffcrit.analyze(str(sd_folder), prompt=PROMPT, **FAST)
    assert (result.samples - unguided.samples).abs().max() > 1e-2  # the guidance acts
    cfg = result.to_dict()["model"]["conditioning"]["cfg"]
    assert cfg == {"scale": 3.0, "negative_prompt": negative}
    assert result.to_dict()["config"]["guidance_scale"] == 3.0
    assert validate_document(result.to_dict()) == "analyze"  # the shipped schema knows model.conditioning.cfg


def test_sdxl_equals_its_pipeline_and_its_default_negative_is_zeros(sdxl_folder):
    """StableDiffusionXLPipeline at its default size (the time ids: sample_size times the VAE's scale factor, 1 for
    this tiny VAE), unguided and guided: without a negative prompt away from zero embeddings
    (force_zeros_for_empty_prompt), with one away from its encoding by both encoders."""
    pipe = diffusers.StableDiffusionXLPipeline.from_pretrained(sdxl_folder)
    for scale, negative in ((1.0, None), (3.0, None), (3.0, NEGATIVE)):
        expected = pipe(prompt=[PROMPT] * 2, negative_prompt=None if negative is None else [negative] * 2,
                        guidance_scale=scale, num_inference_steps=FAST["steps"], generator=generators(2),
                        output_type="latent").images.float()
        result = diffcrit.analyze(str(sdxl_folder), prompt=PROMPT, guidance_scale=scale, negative_prompt=negative,
                                  **FAST)
        torch.testing.assert_close(result.samples, expected, atol=1e-4, rtol=0)


def test_prompt_embeds_with_negative_embeds_equal_the_prompts(sd_folder, tmp_path):
    from safetensors.torch import save_file

    pipe = sd_pipeline(sd_folder)
    positive, negative = pipe.encode_prompt(PROMPT, "cpu", 1, True, negative_prompt=NEGATIVE)
    path = tmp_path / "embeds.safetensors"
    save_file({"prompt_embeds": positive, "negative_prompt_embeds": negative}, str(path))
    from_file = diffcrit.analyze(str(sd_folder), prompt_embeds=str(path), guidance_scale=3.0, **FAST)
    prompted = diffcrit.analyze(str(sd_folder), prompt=PROMPT, negative_prompt=NEGATIVE, guidance_scale=3.0, **FAST)
    torch.testing.assert_close(from_file.samples, prompted.samples, atol=1e-5, rtol=0)
    save_file({"prompt_embeds": positive}, str(tmp_path / "positive.safetensors"))
    one_line_error(run("analyze", "--model", sd_folder, "--prompt-embeds", tmp_path / "positive.safetensors",
                       "--guidance-scale", "3", "--steps", "3", "--quiet"), "no negative_prompt_embeds")


@pytest.mark.parametrize("fixture, null", [("cond_folder", CLASSES), ("dit_folder", 10)])
def test_guided_class_model_equals_guide_at_every_step(fixture, null, request):
    """A class UNet or DiT guided at every step (null class: the UNet's last embedding, the DiT's extra row) samples
    what `guide --at all` does (which equals DiTPipeline: tests/test_guide.py)."""
    from diffcrit.guidance.engine import guide

    folder = str(request.getfixturevalue(fixture))
    result = diffcrit.analyze(folder, class_label=2, guidance_scale=2.5, **FAST)
    arm = guide(folder, at="all", compare=["none"], class_label=2, samples=2, scale=2.5, steps=FAST["steps"],
                bootstrap=0, device="cpu")
    torch.testing.assert_close(result.samples, arm.samples["all"], atol=1e-5, rtol=0)
    assert result.to_dict()["model"]["conditioning"]["cfg"]["null_class"] == null


def test_guided_stiffness_is_the_guided_combination_at_zero(cond_folder):
    """At y = 0 (the same point in every run) the guided denoiser's gain is g_u + w (g_c - g_u), since D is linear in
    the model output: the probes see the guided D, not the conditional one."""
    zero = dict(FAST, linearize_at="zero", probe="fd", steps=6)

    def stiffness(**options):
        steps = diffcrit.analyze(str(cond_folder), **zero, **options).to_dict()["steps"]
        return np.array([s["stiffness"] for s in steps if s.get("stiffness") is not None], dtype=float)

    conditional, null = stiffness(class_label=2), stiffness(class_label=CLASSES)
    expected = null + 2.5 * (conditional - null)
    np.testing.assert_allclose(stiffness(class_label=2, guidance_scale=2.5), expected, atol=2e-4)
    assert np.abs(expected - conditional).max() > 1e-3  # guidance changes the gains measurably


@pytest.mark.parametrize("args, fragments", [
    (["--guidance-scale", "0.5"], ("'--guidance-scale'", "greater than or equal to 1")),
    (["--guidance-scale", "nan"], ("--guidance-scale",)),
    (["--negative-prompt", "x"], ("--negative-prompt", "--guidance-scale")),
])
def test_bad_guidance_options_exit_2(sd_folder, args, fragments):
    one_line_error(run("analyze", "--model", sd_folder, "--prompt", PROMPT, "--steps", "3", "--quiet", *args),
                   *fragments)


def test_guidance_where_there_is_nothing_to_guide_exits_2(cond_folder):
    one_line_error(run("analyze", "--model", "builtin:gaussian", "--guidance-scale", "2", "--quiet"),
                   "no conditioning to guide")
    one_line_error(run("analyze", "--model", cond_folder, "--class-label", str(CLASSES), "--guidance-scale", "2",
                       "--steps", "3", "--quiet"), "null class")
    one_line_error(run("analyze", "--model", cond_folder, "--class-label", "1", "--guidance-scale", "2",
                       "--negative-prompt", "x", "--steps", "3", "--quiet"), "takes no prompt")


@pytest.fixture(scope="module")
def lcm_folder(tmp_path_factory):
    """A guidance-distilled (LCM) UNet: ``time_cond_proj_dim``, LCMScheduler, LatentConsistencyModelPipeline."""
    import json

    from tiny_models import tiny_cond_unet

    folder = save_sd_pipeline(tmp_path_factory.mktemp("lcm"), unet=tiny_cond_unet(time_cond_proj_dim=8))
    diffusers.LCMScheduler(num_train_timesteps=100, original_inference_steps=20).save_pretrained(folder / "scheduler")
    index = json.loads((folder / "model_index.json").read_text())
    index.update(_class_name="LatentConsistencyModelPipeline", scheduler=["diffusers", "LCMScheduler"])
    (folder / "model_index.json").write_text(json.dumps(index))
    return folder


def lcm_pipeline(folder):
    return sd_pipeline(folder, "LatentConsistencyModelPipeline", "LCMScheduler")


@pytest.mark.parametrize("scale", [None, 3.0])
def test_guidance_distilled_unet_embeds_the_scale_as_its_pipeline(lcm_folder, scale):
    """An LCM UNet takes the guidance scale as an input (timestep_cond), at LatentConsistencyModelPipeline's default
    8.5 or --guidance-scale, with no CFG: final latents equal the pipeline's."""
    size = 8 * lcm_pipeline(lcm_folder).vae_scale_factor
    expected = lcm_pipeline(lcm_folder)(
        prompt=[PROMPT] * 2, num_inference_steps=4, height=size, width=size, generator=generators(2),
        output_type="latent", **({} if scale is None else {"guidance_scale": scale})).images.float()
    options = dict(FAST, steps=4) if scale is None else dict(FAST, steps=4, guidance_scale=scale)
    result = diffcrit.analyze(str(lcm_folder), prompt=PROMPT, **options)
    torch.testing.assert_close(result.samples, expected, atol=1e-4, rtol=0)
    conditioning = result.to_dict()["model"]["conditioning"]
    assert conditioning["guidance"] == (8.5 if scale is None else scale) and "cfg" not in conditioning
    one_line_error(run("analyze", "--model", lcm_folder, "--prompt", PROMPT, "--guidance-scale", "3",
                       "--negative-prompt", "x", "--steps", "3", "--quiet"), "guidance-distilled")
