"""The analyze CLI: outputs, streaming, and one-line errors with exit 2."""

import json
import shutil

import jsonschema
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import diffcrit
from diffcrit.report.document import schema
from diffcrit.sampling.states import load_samples
from cli_checks import FAST, one_line_error, run


def test_default_model_json_on_stdout_validates_against_schema():
    result = run("analyze", "--steps", "20", "--samples", "4", "--bootstrap", "20", "--quiet")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    jsonschema.validate(document, schema())
    assert document["model"]["id"] == "builtin:textures"  # the trained default, unconditional (null class)
    assert document["model"]["conditioning"]["class_label"] == 3
    assert document["environment"]["probe_method"] == "fd"  # auto: finite differences for a network
    assert document["environment"]["probe_note"].startswith("auto: central finite differences")
    assert len(document["steps"]) == 20 and document["shells"][0] == 0.0


def test_pipeline_folder_outputs(ddpm_folder, tmp_path):
    out, samples, states = tmp_path / "r.json", tmp_path / "s.safetensors", tmp_path / "states"
    result = run("analyze", "--model", str(ddpm_folder), *FAST, "--out", str(out), "--save-samples", str(samples),
                 "--save-states", str(states))
    assert result.exit_code == 0, result.output
    assert result.stdout == ""  # data went to --out
    document = json.loads(out.read_text())
    jsonschema.validate(document, schema())
    assert document["model"]["class"] == "UNet2DModel" and document["model"]["scheduler"] == "DDPMScheduler"
    assert load_samples(samples).shape == (3, 1, 8, 8)
    index = json.loads((states / "index.json").read_text())
    assert [s["index"] for s in index["steps"]] == list(range(6))
    step = load_file(str(states / "step_0005.safetensors"))
    assert step["y"].shape == step["denoised"].shape == (3, 1, 8, 8)


def test_states_npy_streams_every_step(tmp_path):
    target = tmp_path / "states.npy"
    result = diffcrit.analyze("builtin:gaussian?size=8", steps=5, samples=2, bootstrap=0, save_states=target)
    array = np.load(target, mmap_mode="r")
    assert array.shape == (5, 2, 2, 1, 8, 8)
    final_y = array[-1, 0]
    assert np.isfinite(final_y).all() and np.abs(final_y).sum() > 0
    assert len(json.loads(target.with_suffix(".npy.json").read_text())["steps"]) == 5
    assert result.samples.shape == (2, 1, 8, 8)


def test_bare_model_folder_needs_and_takes_a_scheduler(ddpm_folder):
    bare = ddpm_folder / "unet"
    one_line_error(run("analyze", "--model", str(bare), *FAST), "no scheduler", "--scheduler")
    ok = run("analyze", "--model", str(bare), "--scheduler", "DDIMScheduler", "--prediction-type", "epsilon", *FAST)
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["model"]["scheduler"] == "DDIMScheduler"
    sub = run("analyze", "--model", str(ddpm_folder), "--subfolder", "unet", *FAST)
    assert sub.exit_code == 0, sub.output


def test_dit_needs_a_class_label(dit_folder):
    one_line_error(run("analyze", "--model", str(dit_folder), *FAST), "class-conditional", "--class-label")
    one_line_error(run("analyze", "--model", str(dit_folder), "--class-label", "99", *FAST), "out of range")
    ok = run("analyze", "--model", str(dit_folder), "--class-label", "3", "--probe", "jvp", *FAST)
    assert ok.exit_code == 0, ok.output
    document = json.loads(ok.stdout)
    assert document["model"]["shape"] == [4, 8, 8] and document["environment"]["probe_method"] == "jvp"


@pytest.mark.parametrize("args,fragments", [
    (["--steps", "1"], ["'--steps'", "greater than or equal to 2"]),
    (["--samples", "0"], ["'--samples'", "greater than or equal to 1"]),
    (["--shells", "1"], ["'--shells'", "greater than or equal to 2"]),
    (["--probe", "magic"], ["'--probe': 'magic' is not one of 'auto', 'jvp', 'fd'"]),
    (["--linearize-at", "middle"], ["'--linearize-at'", "'trajectory', 'zero'"]),
    (["--model", "builtin:nosuch"], ["unknown built-in", "mixture"]),
    (["--model", "builtin:mixture?m3=2"], ["no option 'm3'", "m2"]),
    (["--model", "./missing-folder"], ["neither a folder"]),
    (["--model", "someone/missing-model", "--offline"], ["could not get hub model", "--offline"]),
    (["--out", "/nonexistent-dir/x.json"], ["does not exist"]),
    (["--save-samples", "/nonexistent-dir/x.safetensors"], ["does not exist"]),
])
def test_bad_input_is_one_line_and_exit_2(args, fragments):
    one_line_error(run("analyze", *args, "--quiet"), *fragments)


def test_folder_without_config_and_unsupported_class(tmp_path, ddpm_folder):
    empty = tmp_path / "empty"
    empty.mkdir()
    one_line_error(run("analyze", "--model", str(empty), *FAST), "neither model_index.json nor config.json")
    odd = tmp_path / "odd"
    shutil.copytree(ddpm_folder, odd)
    config = json.loads((odd / "unet" / "config.json").read_text())
    (odd / "unet" / "config.json").write_text(json.dumps({**config, "_class_name": "VQModel"}))
    one_line_error(run("analyze", "--model", str(odd), *FAST), "unsupported model class", "UNet2DModel")


@pytest.mark.parametrize("text,fragments", [
    ("{nope", ["config.json is not valid JSON (line 1, column 2"]),
    ("", ["config.json is empty"]),
    ("[1, 2]", ["config.json holds a JSON list, not an object"]),
    ('{"_class_name": "Foo"}', ["unsupported model class 'Foo'", "UNet2DModel"]),
    ("{}", ["config.json has no _class_name"]),
])
def test_bad_model_config_json_reports_its_real_cause(tmp_path, text, fragments):
    """A bare model folder has no scheduler: its config.json is read (and reported on) first."""
    (tmp_path / "config.json").write_text(text)
    one_line_error(run("analyze", "--model", str(tmp_path), *FAST), *fragments)


def test_unwritable_output_is_checked_before_sampling(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr("diffcrit.analysis.engine.run", lambda *a, **k: calls.append(1))
    one_line_error(run("analyze", "--out", str(tmp_path / "no" / "r.json"), "--quiet"), "does not exist")
    assert calls == []


def test_nan_from_the_model_names_the_step(tmp_path):
    def broken(y, sigma):
        return torch.where(sigma.view(-1, 1, 1, 1) < 1.0, torch.full_like(y, float("nan")), y * 0)

    with pytest.raises(diffcrit.UserError, match=r"NaN or Inf at step \d+"):
        diffcrit.analyze(broken, shape=(1, 8, 8), steps=10, samples=2, bootstrap=0)


def test_interrupt_leaves_no_json_and_readable_states(tmp_path, monkeypatch):
    from diffcrit.analysis import engine

    original = engine._probe_step
    count = {"n": 0}

    def interrupt_at_step_3(*args, **kwargs):
        count["n"] += 1
        if count["n"] == 3:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(engine, "_probe_step", interrupt_at_step_3)
    out, states = tmp_path / "r.json", tmp_path / "states"
    result = run("analyze", "--steps", "8", "--samples", "2", "--out", str(out), "--save-states", str(states),
                 "--quiet")
    assert result.exit_code == 130
    assert not out.exists() and not list(tmp_path.glob(".r.json*"))
    written = json.loads((states / "index.json").read_text())["steps"]
    assert [s["index"] for s in written] == [0, 1, 2]
    assert load_file(str(states / "step_0002.safetensors"))["y"].shape == (2, 1, 32, 32)


def test_callable_api_and_config_round_trip():
    def shrink(y, sigma):
        return y / (1 + sigma.view(-1, 1, 1, 1) ** 2)  # exact denoiser of a white unit Gaussian

    result = diffcrit.analyze(shrink, shape=(1, 8, 8), steps=8, samples=4, bootstrap=0, probe_schedule="every")
    document = result.to_dict()
    assert document["model"]["kind"] == "callable"
    for step in document["steps"]:  # J = I / (1 + sigma^2): s = sigma^2 / (1 + sigma^2) on every shell
        expected = step["sigma"] ** 2 / (1 + step["sigma"] ** 2)
        np.testing.assert_allclose(step["stiffness"], expected, atol=1e-5)
    again = diffcrit.analyze(shrink, shape=(1, 8, 8), **document["config"])
    assert again.to_dict()["steps"] == document["steps"]


def test_models_lists_builtins():
    result = run("models")
    assert result.exit_code == 0
    assert "builtin:mixture" in result.output and "builtin:gaussian" in result.output


def test_hub_style_dit_config_loads(dit_folder, tmp_path):
    """facebook/DiT-XL-2-256 names its class Transformer2DModel; it must load as DiT."""
    hub_like = tmp_path / "dit"
    shutil.copytree(dit_folder, hub_like)
    config_path = hub_like / "transformer" / "config.json"
    config_path.write_text(json.dumps({**json.loads(config_path.read_text()), "_class_name": "Transformer2DModel"}))
    ok = run("analyze", "--model", str(hub_like), "--class-label", "1", *FAST)
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["model"]["class"] == "DiTTransformer2DModel"


def test_quiet_prints_nothing(tmp_path):
    result = run("analyze", "--model", "builtin:gaussian?size=8", "--steps", "4", "--samples", "2", "--bootstrap", "0",
                 "--quiet", "--out", str(tmp_path / "r.json"))
    assert result.exit_code == 0 and result.output == ""
    assert json.loads((tmp_path / "r.json").read_text())["model"]["id"] == "builtin:gaussian?size=8"


def test_learned_variance_unet_is_analysed(tmp_path):
    """DDPMPipeline's learned-variance UNet: the scheduler gets all channels, D the mean ones
    (tests/test_pipeline_equivalence.py holds the samples to the pipeline's)."""
    from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

    unet = UNet2DModel(sample_size=8, in_channels=1, out_channels=2, block_out_channels=(8, 16), layers_per_block=1,
                       norm_num_groups=4, down_block_types=("DownBlock2D", "DownBlock2D"),
                       up_block_types=("UpBlock2D", "UpBlock2D"))
    DDPMPipeline(unet=unet, scheduler=DDPMScheduler(variance_type="learned_range")).save_pretrained(tmp_path / "lv")
    ok = run("analyze", "--model", str(tmp_path / "lv"), *FAST)
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["model"]["shape"] == [1, 8, 8]
