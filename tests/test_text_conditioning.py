"""UNet2DConditionModel through the public path with --prompt (SD 1.x layout, tiny CLIP built in code)."""

import pytest
import torch
from typer.testing import CliRunner

pytest.importorskip("transformers")

import diffcrit  # noqa: E402
from diffcrit.cli import app  # noqa: E402
from tiny_models import save_sd_pipeline  # noqa: E402

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

    from diffcrit.conditioning import _encode_prompt

    tokenizer = CLIPTokenizer.from_pretrained(sd_folder / "tokenizer")
    encoder = CLIPTextModel.from_pretrained(sd_folder / "text_encoder")
    ids = tokenizer("a red barn", padding="max_length", max_length=tokenizer.model_max_length,
                    truncation=True, return_tensors="pt").input_ids
    expected = encoder(ids)[0]
    got = _encode_prompt(sd_folder, "a red barn", type("M", (), {"config": {"addition_embed_type": None}})())
    torch.testing.assert_close(got["encoder_hidden_states"], expected)


def test_text_model_without_prompt_is_exit_2(sd_folder):
    result = CliRunner().invoke(app, ["analyze", "--model", str(sd_folder), "--steps", "3", "--quiet"])
    assert result.exit_code == 2 and "--prompt" in result.output
