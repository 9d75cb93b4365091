"""Flow-matching and text-conditioned transformers (SD3, Flux, PixArt-alpha, Sana) follow their own diffusers
pipelines exactly, on the unpacked latent grid; --prompt-embeds; the model-family table is the one place that
names model classes."""

import math
import re
from functools import partial
from pathlib import Path

import diffusers
import pytest
import torch

pytest.importorskip("transformers")

import diffcrit  # noqa: E402
from cli_checks import one_line_error, run  # noqa: E402
from tiny_transformers import save_flux_pipeline, save_pixart_pipeline, save_sana_pipeline, save_sd3_pipeline  # noqa: E402

PROMPT = "a red barn"
ANALYSIS = dict(steps=4, samples=2, device="cpu", probe_samples=1, directions=1, shells=2, bootstrap=0)
# family: (builder, pipeline class, pipeline call options (no CFG), diffcrit options, the embeddings' names)
FAMILIES = {
    "sd3": (save_sd3_pipeline, "StableDiffusion3Pipeline", dict(guidance_scale=1.0), {},
            ("prompt_embeds", None, "pooled_prompt_embeds", None)),
    "flux": (save_flux_pipeline, "FluxPipeline", {}, dict(height=8, width=8),
             ("prompt_embeds", "pooled_prompt_embeds", None)),
    "pixart": (save_pixart_pipeline, "PixArtAlphaPipeline", dict(guidance_scale=1.0, use_resolution_binning=False),
               dict(height=16, width=16), ("prompt_embeds", "prompt_attention_mask", None, None)),
    # SanaPipeline's default is 1024 px; its scale factor without a VAE is 32
    "sana": (save_sana_pipeline, "SanaPipeline", dict(guidance_scale=1.0, use_resolution_binning=False),
             dict(height=256, width=256), ("prompt_embeds", "prompt_attention_mask", None, None)),
}
BUILDERS = {**{name: family[0] for name, family in FAMILIES.items()},
            "sana_bare": partial(save_sana_pipeline, text_encoder=False)}  # no text encoder: --prompt-embeds only
NO_VAE = {"sd3": {"vae": None}, "sana": {"vae": None},
          "sana_bare": {"vae": None, "text_encoder": None, "tokenizer": None}}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    built = {}

    def folder(name):
        if name not in built:
            built[name] = BUILDERS[name](tmp_path_factory.mktemp(name))
        return built[name]

    return folder


def generators(n):
    return [torch.Generator("cpu").manual_seed(i) for i in range(n)]


def load_pipeline(name, folder):
    return getattr(diffusers, FAMILIES[name][1] if name in FAMILIES else "SanaPipeline").from_pretrained(
        folder, **NO_VAE.get(name, {}))


def pipeline_latents(pipe, n, size, **kwargs):
    """The pipeline's final latents (output_type="latent"), unpacked to (n, C, H, W) where it packs them (Flux)."""
    out = pipe(num_inference_steps=ANALYSIS["steps"], generator=generators(n), num_images_per_prompt=n,
               output_type="latent", **size, **kwargs).images
    if isinstance(pipe, diffusers.FluxPipeline):
        out = pipe._unpack_latents(out, size["height"], size["width"], pipe.vae_scale_factor)
    return out


def no_vae_loads(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("diffcrit loaded the VAE")

    monkeypatch.setattr(diffusers.AutoencoderKL, "from_pretrained", refuse)


def record_encode_prompt(pipe, monkeypatch) -> list:
    """The outputs of every encode_prompt call the pipeline's own __call__ makes (with the arguments it passes)."""
    calls, encode = [], pipe.encode_prompt

    def recording(*args, **kwargs):
        calls.append(encode(*args, **kwargs))
        return calls[-1]

    monkeypatch.setattr(pipe, "encode_prompt", recording)
    return calls


def save_embeddings(outputs, names, path: Path) -> Path:
    """encode_prompt's outputs (no CFG) under the pipeline's argument names, one prompt's (the first of the
    repeated batch), as a user would save them."""
    from safetensors.torch import save_file

    save_file({name: out[:1].contiguous() for name, out in zip(names, outputs, strict=True) if name}, str(path))
    return path


@pytest.mark.parametrize("name", list(FAMILIES))
def test_final_latents_equal_the_pipeline_and_prompt_embeds_equal_prompt(name, folders, tmp_path, monkeypatch):
    folder = folders(name)
    _, _, call, size, names = FAMILIES[name]
    pipe = load_pipeline(name, folder)
    encoded = record_encode_prompt(pipe, monkeypatch)
    expected = pipeline_latents(pipe, 2, size, prompt=PROMPT, **call)
    embeds = save_embeddings(encoded[0], names, tmp_path / "embeds.safetensors")
    del pipe
    no_vae_loads(monkeypatch)
    prompted = diffcrit.analyze(str(folder), prompt=PROMPT, **size, **ANALYSIS)
    torch.testing.assert_close(prompted.samples, expected.float(), atol=1e-4, rtol=0)
    from_embeds = diffcrit.analyze(str(folder), prompt_embeds=str(embeds), **size, **ANALYSIS)
    # the pipeline loaded whole rounds its T5 a little differently (5e-7 in the embeddings), grown by the sampler
    torch.testing.assert_close(from_embeds.samples, prompted.samples, atol=1e-4, rtol=1e-3)
    model = from_embeds.to_dict()["model"]
    assert model["conditioning"]["type"] == "prompt_embeds" and model["shape"] == list(expected.shape[1:])


# the pipelines' own classifier-free guidance: guidance_scale, and Flux's true CFG (its guidance_scale is the distilled
# guidance embedding's input, left at its default)
GUIDED = {"sd3": dict(guidance_scale=3.0), "flux": dict(true_cfg_scale=3.0),
          "pixart": dict(guidance_scale=3.0, use_resolution_binning=False),
          "sana": dict(guidance_scale=3.0, use_resolution_binning=False)}


@pytest.mark.parametrize("name", list(FAMILIES))
def test_guided_latents_equal_the_pipelines_cfg(name, folders):
    """--guidance-scale 3 --negative-prompt NEG equals the pipeline's CFG with that negative prompt."""
    folder, size = folders(name), FAMILIES[name][3]
    expected = pipeline_latents(load_pipeline(name, folder), 2, size, prompt=PROMPT, negative_prompt="a blue sky",
                                **GUIDED[name])
    guided = diffcrit.analyze(str(folder), prompt=PROMPT, guidance_scale=3.0, negative_prompt="a blue sky", **size,
                              **ANALYSIS)
    torch.testing.assert_close(guided.samples, expected.float(), atol=1e-4, rtol=0)
    unguided = diffcrit.analyze(str(folder), prompt=PROMPT, **size, **ANALYSIS)
    assert (guided.samples - unguided.samples).abs().max() > 1e-3


@pytest.mark.parametrize("name", list(FAMILIES))
def test_the_prompt_changes_the_samples(name, folders):
    """The tiny text encoders run: another prompt gives other samples (the same seeds)."""
    size, options = FAMILIES[name][3], {**ANALYSIS, "samples": 1}
    red, blue = (diffcrit.analyze(str(folders(name)), prompt=p, **size, **options).samples
                 for p in (PROMPT, "a blue sky"))
    assert (red - blue).abs().max() > 1e-3


def test_sana_with_prompt_embeds_equals_the_pipeline(folders, tmp_path, monkeypatch):
    """Sana ships DPM-Solver in flow-prediction mode (flow sigmas): the flow family; a folder without its Gemma
    encoder takes the embeddings from a file (two of six tokens masked), as the pipeline takes them."""
    from safetensors.torch import save_file

    folder = folders("sana_bare")
    torch.manual_seed(5)
    embeds = {"prompt_embeds": torch.randn(1, 6, 32), "prompt_attention_mask": torch.tensor([[1, 1, 1, 1, 0, 0]])}
    save_file(embeds, str(tmp_path / "sana.safetensors"))
    size = FAMILIES["sana"][3]
    expected = pipeline_latents(load_pipeline("sana_bare", folder), 2, size, **embeds, **FAMILIES["sana"][2])
    result = diffcrit.analyze(str(folder), prompt_embeds=str(tmp_path / "sana.safetensors"), **size, **ANALYSIS)
    torch.testing.assert_close(result.samples, expected.float(), atol=1e-4, rtol=0)
    assert result.to_dict()["model"]["prediction_type"] == "flow"


def flow_sigmas_of_the_pipeline(name, folder):
    """The scheduler's sigmas s as the pipeline sets them (Flux: linspace sigmas and mu of its 16 tokens)."""
    from diffusers.pipelines.flux.pipeline_flux import calculate_shift

    scheduler = load_pipeline(name, folder).scheduler
    if name == "flux":
        import numpy as np

        cfg = scheduler.config
        mu = calculate_shift(16, cfg.base_image_seq_len, cfg.max_image_seq_len, cfg.base_shift, cfg.max_shift)
        scheduler.set_timesteps(sigmas=np.linspace(1.0, 1 / 4, 4), mu=mu)
    else:
        scheduler.set_timesteps(4)
    return scheduler.sigmas[:-1].double().tolist()


@pytest.mark.parametrize("name", ["flux", "sd3"])
def test_recorded_sigma_and_t_follow_the_shifted_sigmas(name, folders):
    """Each recorded step sits at the VE sigma s / (1 - s) of the scheduler's (shifted) sigma s, t = log(1 + sigma^2);
    the pure-noise evaluation (s = 1) is run, not recorded."""
    folder = folders(name)
    steps = diffcrit.analyze(str(folder), prompt=PROMPT, **FAMILIES[name][3], **ANALYSIS).to_dict()["steps"]
    shifted = [s for s in flow_sigmas_of_the_pipeline(name, folder) if s < 1]
    assert len(steps) == len(shifted) >= 2
    for step, s in zip(steps, shifted, strict=True):
        assert step["sigma"] == pytest.approx(s / (1 - s), rel=1e-5)
        assert step["t"] == pytest.approx(math.log1p((s / (1 - s)) ** 2), rel=1e-5)
    if name == "flux":  # the shift depends on the resolution: not the unshifted linspace
        assert steps[0]["sigma"] != pytest.approx(0.75 / 0.25, rel=1e-3)


def test_default_resolution_is_the_pipelines(folders):
    """Flux: default_sample_size (128) times the VAE scale factor read from vae/config.json (1 here); SD3 without
    a VAE: sample_size times the pipeline's constant 8, the latent grid its sample_size."""
    from diffcrit.config import make_config
    from diffcrit.models.loading import load_model, model_shape

    assert model_shape(str(folders("flux"))) == (4, 128, 128)  # the cheap read `diffcrit check` does
    assert model_shape(str(folders("flux")), height=8, width=16) == (4, 8, 16)
    flux = load_model(str(folders("flux")), *[make_config(prompt=PROMPT, device="cpu")] * 2)
    assert flux.shape == (4, 128, 128) and flux.info["pixels"] == [128, 128]
    sd3 = load_model(str(folders("sd3")), *[make_config(prompt=PROMPT, device="cpu")] * 2)
    assert sd3.shape == (4, 8, 8) and sd3.info["pixels"] == [64, 64]
    wide = load_model(str(folders("sd3")), *[make_config(prompt=PROMPT, device="cpu", width=128)] * 2)
    assert wide.shape == (4, 8, 16)


def test_unsupported_and_mistaken_text_options_are_one_line_errors(folders, ddpm_folder, tmp_path):
    from safetensors.torch import save_file

    fast = ["--steps", "4", "--samples", "1", "--bootstrap", "0", "--quiet"]
    one_line_error(run("analyze", "--model", folders("sana_bare"), "--prompt", PROMPT, *fast), "no text_encoder/",
                   "--prompt-embeds")
    one_line_error(run("analyze", "--model", folders("sd3"), *fast), "text-conditional", "--prompt-embeds")
    one_line_error(run("analyze", "--model", ddpm_folder, "--prompt", PROMPT, *fast), "takes no prompt")
    one_line_error(run("analyze", "--model", ddpm_folder, "--prompt-embeds", tmp_path / "x", *fast),
                   "drop --prompt-embeds")
    one_line_error(run("analyze", "--model", ddpm_folder, "--height", "64", *fast), "--height/--width")
    save_file({"prompt_embeds": torch.zeros(1, 4, 32)}, str(tmp_path / "partial.safetensors"))
    one_line_error(run("analyze", "--model", folders("sd3"), "--prompt-embeds", tmp_path / "partial.safetensors",
                       *fast), "no pooled_prompt_embeds")
    one_line_error(run("analyze", "--model", folders("sd3"), "--prompt-embeds", tmp_path / "missing.safetensors",
                       *fast), "cannot read --prompt-embeds")
    one_line_error(run("analyze", "--model", folders("sd3"), "--prompt", PROMPT, "--prompt-embeds",
                       tmp_path / "partial.safetensors", *fast), "alternatives")


def test_hub_downloads_of_transformer_pipelines_skip_the_vae():
    from diffcrit.models.loading import hub_files

    listing = ["model_index.json", "scheduler/scheduler_config.json", "transformer/config.json",
               "transformer/diffusion_pytorch_model.safetensors", "vae/config.json",
               "vae/diffusion_pytorch_model.safetensors", *(f"text_encoder{s}/model.safetensors" for s in ("", "_2")),
               *(f"text_encoder{s}/config.json" for s in ("", "_2")), "tokenizer/vocab.json",
               "tokenizer_2/spiece.model"]
    assert not [f for f in hub_files(listing) if f.startswith("vae/")]
    assert "transformer/diffusion_pytorch_model.safetensors" in hub_files(listing)


MODEL_CLASSES = ("UNet2DModel", "DiTTransformer2DModel", "SD3Transformer2DModel", "FluxTransformer2DModel",
                 "PixArtTransformer2DModel", "SanaTransformer2DModel", "UNet2DConditionModel", "Transformer2DModel")


def test_model_family_class_names_appear_in_one_module():
    package = Path(diffcrit.__file__).parent
    modules = [p for p in package.rglob("*.py") if "training" not in p.relative_to(package).parts]
    pattern = re.compile(r"\b(" + "|".join(MODEL_CLASSES) + r")\b")
    naming = sorted({str(p.relative_to(package)) for p in modules if pattern.search(p.read_text())})
    assert naming == ["models/families.py"]
