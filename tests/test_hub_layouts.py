"""Real hub layouts load (local folders written by save_pretrained), and downloads fetch only what
analysis needs: .bin weights, a weights variant (fp16), sharded weights, component folders only."""

import json

import pytest
import torch
from cli_checks import one_line_error, run
from diffusers import DDPMPipeline, DDPMScheduler
from tiny_models import tiny_unet
from typer.testing import CliRunner

import diffcrit
from diffcrit.cli import app
from diffcrit.models.loading import LoadOptions, hub_files

ANALYSIS = dict(steps=4, samples=2, device="cpu", probe_samples=1, directions=1, shells=2, bootstrap=0)


def pipeline():
    return DDPMPipeline(unet=tiny_unet(), scheduler=DDPMScheduler(num_train_timesteps=100))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    folder = tmp_path_factory.mktemp("plain")
    pipeline().save_pretrained(folder)
    return diffcrit.analyze(str(folder), **ANALYSIS).samples


def test_bin_weights(tmp_path, reference):
    pipeline().save_pretrained(tmp_path, safe_serialization=False)
    assert list((tmp_path / "unet").glob("*.bin")) and not list((tmp_path / "unet").glob("*.safetensors"))
    torch.testing.assert_close(diffcrit.analyze(str(tmp_path), **ANALYSIS).samples, reference, atol=0, rtol=0)


def test_sharded_weights(tmp_path, reference):
    pipeline().save_pretrained(tmp_path, max_shard_size="20KB")
    assert (tmp_path / "unet" / "diffusion_pytorch_model.safetensors.index.json").exists()
    assert len(list((tmp_path / "unet").glob("*-of-*.safetensors"))) > 1
    torch.testing.assert_close(diffcrit.analyze(str(tmp_path), **ANALYSIS).samples, reference, atol=0, rtol=0)


def test_component_folders_only(tmp_path, reference):
    pipe = pipeline()
    pipe.unet.save_pretrained(tmp_path / "unet")
    pipe.scheduler.save_pretrained(tmp_path / "scheduler")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scheduler", "unet"]
    result = diffcrit.analyze(str(tmp_path), **ANALYSIS)
    torch.testing.assert_close(result.samples, reference, atol=0, rtol=0)
    assert result.to_dict()["model"]["scheduler"] == "DDPMScheduler"


def test_fp16_variant(tmp_path, reference):
    pipe = pipeline()
    pipe.unet.half()
    pipe.save_pretrained(tmp_path, variant="fp16")
    assert [p.name for p in (tmp_path / "unet").glob("*.safetensors")] == ["diffusion_pytorch_model.fp16.safetensors"]
    result = diffcrit.analyze(str(tmp_path), load_options=LoadOptions(variant="fp16"), **ANALYSIS)
    assert result.to_dict()["model"]["variant"] == "fp16"
    torch.testing.assert_close(result.samples, reference, atol=2e-2, rtol=0)  # weights rounded to fp16
    args = ["analyze", "--model", str(tmp_path), "--steps", "4", "--samples", "2", "--probe-samples", "1",
            "--directions", "1", "--shells", "2", "--bootstrap", "0", "--device", "cpu"]
    ok = CliRunner().invoke(app, [*args, "--variant", "fp16"])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["model"]["variant"] == "fp16"
    one_line_error(CliRunner().invoke(app, args), "cannot load UNet2DModel")  # no plain weights there


# --------------------------------------------------------------------------------------------
# What a download fetches (the repo's listing -> files; no network)

SD_LIKE = ["model_index.json", "README.md", "v1-5-pruned.ckpt", "v1-5-pruned.safetensors",
           "vae/config.json", "vae/diffusion_pytorch_model.safetensors", "safety_checker/config.json",
           "safety_checker/model.safetensors", "feature_extractor/preprocessor_config.json",
           "unet/config.json", "unet/diffusion_pytorch_model.bin", "unet/diffusion_pytorch_model.safetensors",
           "unet/diffusion_pytorch_model.fp16.bin", "unet/diffusion_pytorch_model.fp16.safetensors",
           "unet/diffusion_flax_model.msgpack", "scheduler/scheduler_config.json",
           "text_encoder/config.json", "text_encoder/model.safetensors", "text_encoder/pytorch_model.bin",
           "tokenizer/vocab.json", "tokenizer/merges.txt", "tokenizer/tokenizer_config.json"]
NON_WEIGHTS = ["model_index.json", "scheduler/scheduler_config.json", "text_encoder/config.json",
               "tokenizer/merges.txt", "tokenizer/tokenizer_config.json", "tokenizer/vocab.json", "unet/config.json"]


def test_hub_files_prefer_safetensors_and_skip_the_vae():
    assert hub_files(SD_LIKE) == sorted([*NON_WEIGHTS, "unet/diffusion_pytorch_model.safetensors",
                                         "text_encoder/model.safetensors"])


def test_hub_files_take_the_variant_asked_for():
    assert hub_files(SD_LIKE, "fp16") == sorted([*NON_WEIGHTS, "unet/diffusion_pytorch_model.fp16.safetensors",
                                                 "text_encoder/model.safetensors"])  # it has no fp16


def test_hub_files_bin_when_a_component_has_no_safetensors():
    listing = [f for f in SD_LIKE if f != "text_encoder/model.safetensors"]
    assert hub_files(listing) == sorted([*NON_WEIGHTS, "unet/diffusion_pytorch_model.bin",
                                         "text_encoder/pytorch_model.bin"])


def test_hub_files_sharded_bare_and_component_only_repos():
    shards = ["unet/config.json", "unet/diffusion_pytorch_model.safetensors.index.json",
              "unet/diffusion_pytorch_model-00001-of-00002.safetensors",
              "unet/diffusion_pytorch_model-00002-of-00002.safetensors", "scheduler/scheduler_config.json"]
    assert hub_files(shards) == sorted(shards)
    bare = ["config.json", "diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin", "sample.png"]
    assert hub_files(bare) == ["config.json", "diffusion_pytorch_model.safetensors"]
    prior = ["prior/config.json", "prior/diffusion_pytorch_model.safetensors", "decoder/config.json",
             "decoder/diffusion_pytorch_model.safetensors"]
    assert hub_files(prior, subfolder="prior") == ["prior/config.json", "prior/diffusion_pytorch_model.safetensors"]


def test_missing_variant_is_a_user_error():
    with pytest.raises(diffcrit.UserError, match="variant 'bf16'"):
        hub_files(SD_LIKE, "bf16")


def test_download_asks_the_hub_for_those_files_only(monkeypatch, tmp_path):
    import huggingface_hub

    from diffcrit.models.loading import download

    asked = {}
    monkeypatch.setattr(huggingface_hub.HfApi, "list_repo_files", lambda self, repo_id, revision=None: SD_LIKE)
    monkeypatch.setattr(huggingface_hub, "snapshot_download",
                        lambda repo_id, **kwargs: (asked.update(kwargs), str(tmp_path))[1])
    assert download("owner/name", LoadOptions(variant="fp16")) == tmp_path
    assert asked["allow_patterns"] == hub_files(SD_LIKE, "fp16") and not asked["local_files_only"]


@pytest.mark.parametrize("class_name, config, fragment", [
    ("UNet2DConditionModel", {"in_channels": 9}, "takes 9 input channels but predicts 4"),  # SD inpainting
    ("UNet2DConditionModel", {"in_channels": 8}, "takes 8 input channels but predicts 4"),  # instruct-pix2pix
    ("UNet2DConditionModel", {"addition_embed_type": "image"}, "addition_embed_type 'image'"),  # Kandinsky 2.2
    ("UNet2DConditionModel", {"class_embed_type": "timestep"}, "class_embed_type 'timestep'"),  # IF stage II
    ("FluxTransformer2DModel", {"in_channels": 384, "out_channels": 64}, "takes 384 input channels"),  # Flux Fill
])
def test_image_conditioned_models_are_refused_before_their_weights(tmp_path, class_name, config, fragment):
    """What needs an image or mask besides noise and a prompt is refused from config.json alone, in one line (no
    weights in the folder: they are never read)."""
    import json

    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"_class_name": class_name, **config}))
    result = run("analyze", "--model", folder, "--scheduler", "DDIMScheduler", "--prompt", "a red barn", "--quiet")
    one_line_error(result, fragment, "image-conditioned")


def test_generative_models_pass_the_channel_check():
    """Mean-only and learned-variance (2C) outputs, and configs that state no out_channels, are generative."""
    from diffcrit.models.families import check_generative, family_named

    for class_name, config in (("UNet2DModel", {"in_channels": 3, "out_channels": 6}), ("Transformer2DModel",
                               {"in_channels": 4, "out_channels": 8}), ("PixArtTransformer2DModel", {}),
                               ("FluxTransformer2DModel", {"in_channels": 64}), ("SD3Transformer2DModel", {})):
        check_generative(family_named(class_name), class_name, config)


def test_a_failing_download_is_one_line_without_the_hubs_retry_warnings(monkeypatch):
    """huggingface_hub logs every retry of a request that fails (no network): while diffcrit downloads, its warnings
    are off (diffcrit's one line replaces them), and back on after."""
    import logging

    import huggingface_hub
    from huggingface_hub.utils import logging as hub_logging

    retry_warnings_on = []

    def offline(self, repo_id, **kwargs):
        retry_warnings_on.append(hub_logging.get_logger("huggingface_hub.utils._http").isEnabledFor(logging.WARNING))
        raise ConnectionError("Name or service not known")

    monkeypatch.setattr(huggingface_hub.HfApi, "list_repo_files", offline)
    one_line_error(run("analyze", "--model", "someone/some-model", "--quiet"), "could not get hub model",
                   "Name or service not known")
    assert retry_warnings_on == [False]
    assert hub_logging.get_logger("huggingface_hub.utils._http").isEnabledFor(logging.WARNING)
