"""The diffusers objects a caller holds (docs/models.md, "Objects you hold"): ``analyze(pipe)`` and
``analyze(pipe.unet, scheduler=pipe.scheduler)`` give the folder run's document; the caller's objects are left as
they were; what cannot be analysed is one line."""

import json

import pytest
import torch
from diffusers import DDIMScheduler, DiffusionPipeline

import diffcrit
from diffcrit.errors import UserError
from diffcrit.config import ConditioningConfig, ModelConfig
from diffcrit.models.loading import LoadOptions, _held_device, load_model, model_shape, model_source
from tiny_models import tiny_cond_unet, tiny_vae

FAST = dict(steps=4, samples=2, device="cpu", probe_samples=1, directions=1, shells=2, bootstrap=0)
MODEL_ONLY = ("model", "timing", "created")  # where the document of an object differs from the folder's
SAME = ("class", "scheduler", "prediction_type", "shape", "conditioning", "dtype")  # of the model block


def comparable(result) -> str:
    """The document without what names the model or the run's time: every float as JSON writes it."""
    document = result.to_dict()
    return json.dumps({key: value for key, value in document.items() if key not in MODEL_ONLY}, sort_keys=True)


def load_pipeline(folder):
    return DiffusionPipeline.from_pretrained(folder)


def assert_same_run(folder, held, **options):
    """``held`` (as ``analyze`` takes it: a pipeline, or (module, scheduler)) gives the folder's document and
    samples, bit for bit."""
    expected = diffcrit.analyze(str(folder), **FAST, **options)
    model, extra = held if isinstance(held, tuple) else (held, {})
    got = diffcrit.analyze(model, **FAST, **options, **extra)
    assert comparable(got) == comparable(expected)
    torch.testing.assert_close(got.samples, expected.samples, atol=0, rtol=0)
    block, folder_block = got.to_dict()["model"], expected.to_dict()["model"]
    assert {key: block[key] for key in SAME} == {key: folder_block[key] for key in SAME}
    return block


def test_ddpm_pipeline_and_its_unet_equal_the_folder(ddpm_folder):
    pipe = load_pipeline(ddpm_folder)
    block = assert_same_run(ddpm_folder, pipe)
    assert block["kind"] == "pipeline" and block["id"] == str(ddpm_folder) and block["pipeline"] == "DDPMPipeline"
    assert block["class"] == "UNet2DModel" and block["scheduler"] == "DDPMScheduler"
    block = assert_same_run(ddpm_folder, (pipe.unet, {"scheduler": pipe.scheduler}))
    assert block["kind"] == "module" and block["id"] == str(ddpm_folder / "unet")
    loaded = load_model(pipe, ModelConfig(device="cpu"), ConditioningConfig())  # the library's loader takes it too
    assert loaded.module is pipe.unet and loaded.scheduler is not pipe.scheduler and loaded.root == ddpm_folder
    assert model_shape(pipe) == model_shape(str(ddpm_folder)) == (1, 8, 8)


def test_class_conditional_dit_pipeline_equals_the_folder(dit_folder):
    pipe = load_pipeline(dit_folder)
    assert_same_run(dit_folder, pipe, class_label=3)
    assert_same_run(dit_folder, (pipe.transformer, {"scheduler": pipe.scheduler}), class_label=3)


@pytest.fixture(scope="module")
def sd_pipeline_folder(tmp_path_factory):
    """A whole tiny StableDiffusionPipeline (text encoder, tokenizer, UNet, scheduler, VAE) saved by diffusers."""
    pytest.importorskip("transformers")
    from tiny_models import save_sd_pipeline, sd_pipeline

    parts = save_sd_pipeline(tmp_path_factory.mktemp("sd_parts"))
    folder = tmp_path_factory.mktemp("sd_pipeline")
    sd_pipeline(parts).save_pretrained(folder)
    return folder


def test_text_conditioned_pipeline_equals_the_folder(sd_pipeline_folder):
    pipe = load_pipeline(sd_pipeline_folder)
    block = assert_same_run(sd_pipeline_folder, pipe, prompt="a red barn")
    assert block["conditioning"] == {"type": "prompt", "prompt": "a red barn"}
    # the module reads the text encoder of the pipeline folder it was loaded from
    assert_same_run(sd_pipeline_folder, (pipe.unet, {"scheduler": pipe.scheduler}), prompt="a red barn")
    # an outdated scheduler config, which StableDiffusionPipeline updates on construction: diffcrit updates its
    # own copy as the pipeline does, never the caller's scheduler
    legacy = DDIMScheduler.from_config(pipe.scheduler.config, steps_offset=0, clip_sample=True)
    assert_same_run(sd_pipeline_folder, (pipe.unet, {"scheduler": legacy}), prompt="a red barn")
    assert legacy.config.steps_offset == 0 and legacy.config.clip_sample


def test_a_pipeline_from_the_hub_reads_the_snapshot_it_was_loaded_from(sd_pipeline_folder, tmp_path):
    """``from_pretrained(hub id)``: the id is recorded; text encoders are read from the cached snapshot its
    components came from (here a hand-made cache, read offline)."""
    import shutil

    snapshot = tmp_path / "models--owner--tiny-sd" / "snapshots" / ("0" * 40)
    shutil.copytree(sd_pipeline_folder, snapshot)
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text("0" * 40)
    pipe = DiffusionPipeline.from_pretrained("owner/tiny-sd", cache_dir=tmp_path, local_files_only=True)
    assert pipe.name_or_path == "owner/tiny-sd" and model_source(pipe) == snapshot
    block = assert_same_run(snapshot, pipe, prompt="a red barn")
    assert block["id"] == "owner/tiny-sd" and block["kind"] == "pipeline"


def test_scheduler_and_prediction_type_override_the_objects_own_as_a_folders(ddpm_folder):
    pipe = load_pipeline(ddpm_folder)
    assert_same_run(ddpm_folder, pipe, scheduler="DDIMScheduler", prediction_type="sample")
    # a scheduler object is the model's own, as a folder's: the config records no override, the model its class
    ddim = DDIMScheduler.from_config(pipe.scheduler.config)
    got = diffcrit.analyze(pipe.unet, scheduler=ddim, **FAST)
    expected = diffcrit.analyze(str(ddpm_folder), scheduler="DDIMScheduler", **FAST)
    torch.testing.assert_close(got.samples, expected.samples, atol=0, rtol=0)
    assert got.to_dict()["steps"] == expected.to_dict()["steps"]
    assert got.to_dict()["model"]["scheduler"] == "DDIMScheduler" and got.to_dict()["config"]["scheduler"] is None


def test_the_callers_pipeline_is_left_as_it_was(ddpm_folder):
    pipe = load_pipeline(ddpm_folder)
    pipe.scheduler.set_timesteps(7)
    timesteps = pipe.scheduler.timesteps.clone()
    pipe.unet.train()
    frozen = pipe.unet.conv_in.weight
    frozen.requires_grad_(False)
    during = []
    pipe.unet.register_forward_pre_hook(lambda module, args: during.append(
        (module.training, any(p.requires_grad for p in module.parameters()))))
    assert_same_run(ddpm_folder, pipe)
    assert during and set(during) == {(False, False)}  # eval mode, no gradients while diffcrit samples
    assert pipe.unet.training and all(m.training for m in pipe.unet.modules())
    assert not frozen.requires_grad and all(p.requires_grad for p in pipe.unet.parameters() if p is not frozen)
    assert pipe.unet.dtype == torch.float32 and pipe.unet.device.type == "cpu"
    assert pipe.scheduler.num_inference_steps == 7 and torch.equal(pipe.scheduler.timesteps, timesteps)


def test_another_dtype_than_the_modules_is_refused_in_one_line(ddpm_folder):
    pipe = load_pipeline(ddpm_folder)
    with pytest.raises(UserError) as caught:
        diffcrit.analyze(pipe, dtype="bfloat16", **{**FAST, "device": "auto"})
    assert caught.value.option == "dtype" and "float32" in str(caught.value) and "\n" not in str(caught.value)
    assert pipe.unet.dtype == torch.float32 and not pipe.unet.training
    with pytest.raises(UserError) as caught:  # what to read from a folder: the object is already loaded
        diffcrit.analyze(pipe, load_options=LoadOptions(variant="fp16"), **FAST)
    assert caught.value.option == "variant"


def test_another_device_than_the_modules_is_refused():
    class Elsewhere:  # what _held_device reads of a module: where it is and its dtype
        device, dtype = torch.device("meta"), torch.float32

    assert _held_device(Elsewhere(), ModelConfig(device="auto")) == torch.device("meta")
    with pytest.raises(UserError) as caught:
        _held_device(Elsewhere(), ModelConfig(device="cpu"))
    assert caught.value.option == "device" and "is on meta" in str(caught.value)


def test_a_module_without_a_scheduler_is_one_line(ddpm_folder):
    pipe = load_pipeline(ddpm_folder)
    with pytest.raises(UserError) as caught:
        diffcrit.analyze(pipe.unet, **FAST)
    message = str(caught.value)
    assert caught.value.option == "scheduler" and "\n" not in message
    assert "pass the pipeline" in message and "scheduler=pipe.scheduler" in message


@pytest.mark.parametrize("model,fragment", [(tiny_vae(), "unsupported model class AutoencoderKL"),
                                            (torch.nn.Linear(2, 2), "needs `shape`")])
def test_an_object_diffcrit_cannot_analyse_is_one_line(model, fragment):
    with pytest.raises(UserError) as caught:
        diffcrit.analyze(model, **FAST)
    assert fragment in str(caught.value) and "\n" not in str(caught.value)


def test_a_latent_model_from_no_folder_is_one_line():
    """An SD UNet built in memory: no folder to read the text encoder and the VAE scale from."""
    with pytest.raises(UserError) as caught:
        diffcrit.analyze(tiny_cond_unet(), scheduler=DDIMScheduler(num_train_timesteps=100), prompt="a red barn",
                         **FAST)
    assert "came from no local folder" in str(caught.value) and "\n" not in str(caught.value)


def test_outputs_into_the_pipelines_folder_are_refused(ddpm_folder):
    pipe = load_pipeline(ddpm_folder)
    assert model_source(pipe) == ddpm_folder and model_source(pipe.unet) == ddpm_folder
    with pytest.raises(UserError, match="model folder"):
        diffcrit.analyze(pipe, save_samples_to=ddpm_folder / "samples.npz", **FAST)
    assert not (ddpm_folder / "samples.npz").exists()


def test_guide_and_suggest_take_a_class_conditional_pipeline(cond_folder, critical_json):
    from diffcrit.guidance.engine import guide, suggest

    pipe = load_pipeline(cond_folder)
    options = dict(at="0.3:0.5", compare=["none"], class_label=2, samples=2, steps=6, device="cpu", bootstrap=0)
    expected = guide(str(cond_folder), **options)
    for held in (guide(pipe, **options), guide(pipe.unet, scheduler=pipe.scheduler, **options)):
        assert held.document["model"]["guidance"] == expected.document["model"]["guidance"]
        for name, samples in expected.samples.items():
            torch.testing.assert_close(held.samples[name], samples, atol=0, rtol=0)
    advice = dict(critical_from=critical_json, steps=6, device="cpu")
    held = suggest(pipe.unet, scheduler=pipe.scheduler, **advice)
    assert held["interval"] == suggest(str(cond_folder), **advice)["interval"]


def test_flux_pipeline_equals_the_folder(tmp_path):
    """Flux: packed latents, a resolution-dependent shift in ``set_timesteps`` and ``height``/``width``, as for the
    folder."""
    pytest.importorskip("transformers")
    from tiny_transformers import save_flux_pipeline

    folder = save_flux_pipeline(tmp_path / "flux")
    pipe = load_pipeline(folder)
    block = assert_same_run(folder, pipe, prompt="a red barn", height=8, width=16)
    assert block["shape"] == [4, 8, 16] and block["class"] == "FluxTransformer2DModel"
