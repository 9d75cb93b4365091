"""UNet2DConditionModel through the public path with --prompt (SD 1.x layout, tiny CLIP built in code)."""

import pytest
import torch

pytest.importorskip("transformers")

import diffcrit  # noqa: E402
from tiny_models import save_sd_pipeline  # noqa: E402
from cli_checks import run  # noqa: E402

FAST = dict(steps=5, samples=2, probe_samples=1, directions=1, shells=2, bootstrap=0)


@pytest.fixture(scope="module")
def sd_folder(tmp_path_factory):
    return save_sd_pipeline(tmp_path_factory.mktemp("sd"))


def test_prompt_is_encoded_and_conditions_the_samples(sd_folder):
    # forward AD through cross-attention
    red = diffcrit.analyze(str(sd_folder), prompt="a red barn", probe="jvp", **FAST)
    blue = diffcrit.analyze(str(sd_folder), prompt="a blue sky", **FAST)
    document = red.to_dict()
    assert document["model"]["class"] == "UNet2DConditionModel"
    assert document["model"]["conditioning"] == {"type": "prompt", "prompt": "a red barn"}
    assert document["environment"]["probe_method"] == "jvp"
    assert red.samples.shape == (2, 4, 8, 8)
    assert not torch.allclose(red.samples, blue.samples)  # the prompt reaches the UNet


def test_prompt_embeddings_match_the_text_encoder(sd_folder):
    from transformers import CLIPTextModel, CLIPTokenizer

    from diffcrit.models.conditioning import _sd_embeds

    tokenizer = CLIPTokenizer.from_pretrained(sd_folder / "tokenizer")
    encoder = CLIPTextModel.from_pretrained(sd_folder / "text_encoder")
    ids = tokenizer("a red barn", padding="max_length", max_length=tokenizer.model_max_length,
                    truncation=True, return_tensors="pt").input_ids
    expected = encoder(ids)[0]
    got = _sd_embeds(sd_folder, ["a red barn"], ("prompt_embeds",))[0]
    torch.testing.assert_close(got["prompt_embeds"], expected)


def test_text_model_without_prompt_is_exit_2(sd_folder):
    result = run("analyze", "--model", sd_folder, "--steps", "3", "--quiet")
    assert result.exit_code == 2 and "--prompt" in result.output


@pytest.fixture(scope="module")
def sdxl_folder(tmp_path_factory):
    from tiny_models import save_sdxl_pipeline

    return save_sdxl_pipeline(tmp_path_factory.mktemp("sdxl"))


def test_sdxl_prompt_embeddings_match_the_pipeline(sdxl_folder):
    """The text_time branch: both encoders' penultimate hidden states, the pooled projection and the
    time ids, as StableDiffusionXLPipeline.encode_prompt and _get_add_time_ids compute them."""
    from diffusers import StableDiffusionXLPipeline

    from diffcrit.models.conditioning import _sd_embeds
    from diffcrit.models.families import SD_TEXT

    pipeline = StableDiffusionXLPipeline.from_pretrained(sdxl_folder)
    embeds, _, pooled, _ = pipeline.encode_prompt("a red barn", device="cpu", num_images_per_prompt=1,
                                                  do_classifier_free_guidance=False)
    size = (pipeline.unet.config.sample_size * pipeline.vae_scale_factor,) * 2  # the pipeline's default image
    got = SD_TEXT.to_cond(pipeline.unet, _sd_embeds(sdxl_folder, ["a red barn"], SD_TEXT.names(pipeline.unet))[0],
                          size)
    torch.testing.assert_close(got["encoder_hidden_states"], embeds)
    torch.testing.assert_close(got["added_cond_kwargs"]["text_embeds"], pooled)
    time_ids = pipeline._get_add_time_ids(size, (0, 0), size, dtype=torch.float32,
                                          text_encoder_projection_dim=pipeline.text_encoder_2.config.projection_dim)
    torch.testing.assert_close(got["added_cond_kwargs"]["time_ids"], time_ids)


def test_sdxl_prompt_conditions_the_samples_and_jvp_runs(sdxl_folder):
    red = diffcrit.analyze(str(sdxl_folder), prompt="a red barn", probe="jvp", **FAST)
    blue = diffcrit.analyze(str(sdxl_folder), prompt="a blue sky", **FAST)
    document = red.to_dict()
    assert document["model"]["class"] == "UNet2DConditionModel"
    assert document["environment"]["probe_method"] == "jvp"
    assert red.samples.shape == (2, 4, 8, 8) and torch.isfinite(red.samples).all()
    assert not torch.allclose(red.samples, blue.samples)  # the prompt reaches the UNet through both paths


def test_a_unet_whose_text_encoder_is_not_clip_is_refused(sd_folder, tmp_path):
    """DeepFloyd IF's UNet reads T5 embeddings: diffcrit's CLIP encoding would load the T5 weights as a random CLIP."""
    import json
    import shutil

    from cli_checks import one_line_error

    folder = tmp_path / "if"
    shutil.copytree(sd_folder, folder)
    config = folder / "text_encoder" / "config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "model_type": "t5"}))
    one_line_error(run("analyze", "--model", folder, "--prompt", "a red barn", "--steps", "3", "--quiet"),
                   "t5 encoder", "--prompt-embeds")


def test_the_sdxl_refiner_is_refused_in_one_line(tmp_path):
    """The refiner's UNet takes 5 time ids (an aesthetic score), sized into its projection: refused before sampling."""
    import json

    from cli_checks import one_line_error
    from tiny_models import save_sdxl_pipeline, tiny_sdxl_unet

    from safetensors.torch import save_file

    folder = save_sdxl_pipeline(tmp_path / "refiner")
    tiny_sdxl_unet(projection_class_embeddings_input_dim=8 + 5 * 4).save_pretrained(folder / "unet")
    assert json.loads((folder / "unet" / "config.json").read_text())["projection_class_embeddings_input_dim"] == 28
    embeds = tmp_path / "embeds.safetensors"  # (the text encoders' own loading bars are not diffcrit's lines)
    save_file({"prompt_embeds": torch.zeros(1, 8, 24), "pooled_prompt_embeds": torch.zeros(1, 8)}, str(embeds))
    one_line_error(run("analyze", "--model", folder, "--prompt-embeds", embeds, "--steps", "3", "--quiet"),
                   "takes 5 time ids", "refiner")
