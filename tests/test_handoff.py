"""The handoff to diffusers (diffcrit/diffusers.py): guiders that guide exactly the suggested steps, GuidanceWindow
in StableDiffusionPipeline, `guide --suggest` on a text model."""

from __future__ import annotations

import json
import math

import pytest
import torch
from diffusers import ClassifierFreeGuidance, DDIMScheduler, HeunDiscreteScheduler
from diffusers.utils import logging as diffusers_logging

from diffcrit.diffusers import (CALLBACK_TENSORS, GuidanceWindow, block_for, guider_config, guider_fractions,
                                save_guider)
from diffcrit.errors import UserError
from diffcrit.report.document import validate_document
from result_factory import make_analyze_result
from tiny_models import save_sd_pipeline, sd_pipeline
import cli_checks
from cli_checks import one_line_error


@pytest.fixture(autouse=True)
def quiet_guiders():
    """diffusers warns "Guiders are currently an experimental feature" on every guider it builds."""
    verbosity = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()
    yield
    diffusers_logging.set_verbosity(verbosity)


def guided_steps(guider: ClassifierFreeGuidance, n: int, steps) -> list[int]:
    """The steps among ``steps`` that diffusers' own guider logic guides in a loop of n steps."""
    out = []
    for i in steps:
        guider.set_state(step=i, num_inference_steps=n, timestep=None)
        if guider._is_cfg_enabled():  # the check ClassifierFreeGuidance.forward and num_conditions make
            out.append(i)
    return out


# ---------------------------------------------------------------------------------------------
# Guiders: the midpoint rule, through diffusers' own logic


def test_midpoint_fractions_guide_exactly_the_block_for_every_n_up_to_1000():
    """Every N <= 1000 and every block a..b. The guider guides i when int(start N) <= i < int(stop N): a window of
    steps, so the block is exact when the guider built from a's start (stop 1) switches on at a and not at a - 1,
    and the one built from b's stop (start 0) is on at b and off at b + 1; both checked by the guider itself, one
    guider per N whose start and stop are set as from_config sets them (building 10^6 guiders takes minutes)."""
    guider = ClassifierFreeGuidance(guidance_scale=3.0)
    for n in range(1, 1001):
        for a in range(n):
            start, _ = guider_fractions(a, n - 1, n)
            guider._start, guider._stop = start, 1.0
            assert guided_steps(guider, n, [a - 1, a]) == [a], (n, a)
        for b in range(n):
            _, stop = guider_fractions(0, b, n)
            guider._start, guider._stop = 0.0, stop
            assert guided_steps(guider, n, [b, b + 1]) == [b], (n, b)


def test_every_block_of_small_n_is_exact_step_by_step_and_the_naive_rule_is_not():
    """Whole loops (every step) for N <= 40, with guiders built from the config; the naive start = a / N misses."""
    naive_misses = 0
    for n in range(1, 41):
        for a in range(n):
            for b in range(a, n):
                guider = ClassifierFreeGuidance(**guider_config(a, b, n, 3.0))
                assert guided_steps(guider, n, range(n)) == list(range(a, b + 1)), (n, a, b)
                naive = ClassifierFreeGuidance(guidance_scale=3.0, start=a / n, stop=(b + 1) / n)
                naive_misses += guided_steps(naive, n, range(n)) != list(range(a, b + 1))
    assert naive_misses > 0  # e.g. N = 29, a = 7: int(7 / 29 * 29) = 6


def test_saved_guider_loads_with_from_pretrained_and_guides_the_block(tmp_path):
    for n, a, b in [(22, 5, 9), (50, 12, 17), (50, 40, 49), (1000, 333, 666), (7, 0, 0)]:
        folder = save_guider(guider_config(a, b, n, 4.5), tmp_path / f"g{n}-{a}")
        guider = ClassifierFreeGuidance.from_pretrained(folder)
        assert guider.guidance_scale == 4.5
        assert guided_steps(guider, n, range(n)) == list(range(a, b + 1))
    with pytest.raises(UserError, match="does not fit"):
        guider_fractions(3, 8, 8)


# ---------------------------------------------------------------------------------------------
# GuidanceWindow in StableDiffusionPipeline


@pytest.fixture(scope="module")
def sd_folder(tmp_path_factory):
    return save_sd_pipeline(tmp_path_factory.mktemp("sd_handoff"))


@pytest.fixture(scope="module")
def sd_pipe(sd_folder):
    pipe = sd_pipeline(sd_folder)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def reference_latents(pipe, prompt: str, n_steps: int, block: tuple[int, int], scale: float, images: int):
    """The loop of StableDiffusionPipeline written out, CFG (eps_u + S (eps_c - eps_u)) on the block's steps only."""
    cond, negative = pipe.encode_prompt(prompt, "cpu", images, True, None)
    scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    scheduler.set_timesteps(n_steps)
    shape = (images, 4, 8, 8)
    latents = torch.randn(shape, generator=torch.Generator().manual_seed(0)) * scheduler.init_noise_sigma
    for i, t in enumerate(scheduler.timesteps):
        x = scheduler.scale_model_input(latents, t)
        if block[0] <= i <= block[1]:
            both = pipe.unet(torch.cat([x, x]), t, encoder_hidden_states=torch.cat([negative, cond])).sample
            eps_u, eps_c = both.chunk(2)
            eps = eps_u + scale * (eps_c - eps_u)
        else:
            eps = pipe.unet(x, t, encoder_hidden_states=cond).sample
        latents = scheduler.step(eps, t, latents).prev_sample
    return latents


@pytest.mark.parametrize("block, images", [((0, 2), 1), ((2, 3), 1), ((3, 5), 2), ((0, 5), 1), ((1, 1), 2)])
def test_guidance_window_guides_exactly_the_block(sd_pipe, block, images):
    n_steps, scale = 6, 5.0
    window = GuidanceWindow(*block, guidance_scale=scale)
    size = 8 * sd_pipe.vae_scale_factor
    with torch.no_grad():
        latents = sd_pipe(**window.pipeline_kwargs(sd_pipe, "a red barn"), num_inference_steps=n_steps,
                          num_images_per_prompt=images, output_type="latent",
                          generator=torch.Generator().manual_seed(0), height=size, width=size).images
        expected = reference_latents(sd_pipe, "a red barn", n_steps, block, scale, images)
        unguided = reference_latents(sd_pipe, "a red barn", n_steps, (n_steps, n_steps), scale, images)
    torch.testing.assert_close(latents, expected, atol=1e-5, rtol=0)
    assert (latents - unguided).abs().max() > 1e-3  # the block's guidance changed the samples


def test_guidance_window_counts_the_forwards(sd_pipe):
    """Batch size of every UNet forward: doubled on the block's steps only."""
    sizes = []
    handle = sd_pipe.unet.register_forward_pre_hook(lambda module, args: sizes.append(args[0].shape[0]))
    try:
        with torch.no_grad():
            sd_pipe(**GuidanceWindow(2, 4, 3.0).pipeline_kwargs(sd_pipe, "a red barn"), num_inference_steps=7,
                    output_type="latent", height=8 * sd_pipe.vae_scale_factor, width=8 * sd_pipe.vae_scale_factor)
    finally:
        handle.remove()
    assert sizes == [1, 1, 2, 2, 2, 1, 1]


def test_guidance_window_refuses_what_it_cannot_serve(sd_pipe):
    class StableDiffusionXLPipeline:  # the name is what is checked
        unet = sd_pipe.unet

    with pytest.raises(UserError, match="not StableDiffusionXLPipeline.*pooled embeddings"):
        GuidanceWindow(1, 2, 3.0).check(StableDiffusionXLPipeline())
    with pytest.raises(UserError, match="> 1"):
        GuidanceWindow(1, 2, 1.0)
    with pytest.raises(UserError, match="empty"):
        GuidanceWindow(3, 2, 2.0)
    assert GuidanceWindow(1, 2, 3.0).tensor_inputs == CALLBACK_TENSORS
    assert (GuidanceWindow(0, 2, 3.0).initial_scale, GuidanceWindow(1, 2, 3.0).initial_scale) == (3.0, 1.0)


# ---------------------------------------------------------------------------------------------
# Another step count; the CLI on a text model


def test_block_for_recomputes_the_block_from_the_t_window(sd_pipe):
    from diffcrit.frame import sigma_to_t

    scheduler = DDIMScheduler.from_config(sd_pipe.scheduler.config)
    for n in (10, 25, 50):
        a, b = block_for((0.3, 0.6), scheduler, n)
        probe = DDIMScheduler.from_config(scheduler.config)
        probe.set_timesteps(n)
        abar = probe.alphas_cumprod[probe.timesteps]
        t = [sigma_to_t(math.sqrt((1 - x) / x)) for x in abar.tolist()]
        assert [i for i, ti in enumerate(t) if 0.3 <= ti <= 0.6] == list(range(a, b + 1))
    with pytest.raises(UserError, match="twice per step"):
        block_for((0.3, 0.6), HeunDiscreteScheduler(num_train_timesteps=100), 10)
    with pytest.raises(UserError, match="no step"):
        block_for((50.0, 60.0), scheduler, 10)


def test_cli_suggest_on_a_text_model_writes_the_diffusers_block(sd_folder, tmp_path):
    result_file, guider = tmp_path / "r.json", tmp_path / "guider"
    result_file.write_text(json.dumps(make_analyze_result(0.45)))
    result = cli_checks.run("guide", "--model", str(sd_folder), "--suggest", "--critical-from", str(result_file),
                            "--window-width", "0.3", "--steps", "20", "--guidance-scale", "6", "--save-guider",
                            str(guider), "--quiet")
    assert result.exit_code == 0, result.output[-3000:]
    document = json.loads(result.stdout)
    assert validate_document(document, "guide-suggestion") == "guide-suggestion"
    handoff, interval = document["diffusers"], document["interval"]
    import diffusers

    assert handoff["tested_with"] == diffusers.__version__ and handoff["num_inference_steps"] == 20
    assert handoff["scheduler"]["class"] == "DDIMScheduler" and handoff["scheduler"]["config"]["steps_offset"] == 1
    assert handoff["step_window"] == interval["steps"]  # DDIM: one loop step per scheduler step, none hidden
    loaded = ClassifierFreeGuidance.from_pretrained(guider)
    assert loaded.guidance_scale == 6.0 and handoff["guider"]["config"]["start"] == loaded.config.start
    assert guided_steps(loaded, 20, range(20)) == list(range(interval["steps"][0], interval["steps"][1] + 1))
    assert block_for(interval["t"], DDIMScheduler.from_config(handoff["scheduler"]["config"]), 20) == \
        handoff["step_window"]


def test_cli_save_guider_needs_suggest(sd_folder, tmp_path):
    one_line_error(cli_checks.run("guide", "--model", str(sd_folder), "--save-guider", str(tmp_path / "g"),
                                  "--quiet"), "--save-guider", "add --suggest")


def test_suggest_without_a_critical_time_still_needs_a_class_conditional_model(sd_folder):
    one_line_error(cli_checks.run("guide", "--model", str(sd_folder), "--suggest", "--steps", "8", "--quiet"),
                   "class-conditional")


def test_the_module_does_not_shadow_the_diffusers_package():
    import importlib

    import diffcrit.diffusers
    import diffusers

    assert diffusers.__name__ == "diffusers" and hasattr(diffusers, "StableDiffusionPipeline")
    assert importlib.import_module("diffcrit.guidance.engine").torch is torch
    assert diffcrit.diffusers.GuidanceWindow is GuidanceWindow


def test_suggest_from_a_critical_time_refuses_a_model_without_a_scheduler(tmp_path):
    result_file = tmp_path / "r.json"
    result_file.write_text(json.dumps(make_analyze_result(0.45)))
    one_line_error(cli_checks.run("guide", "--model", "builtin:mixture", "--suggest", "--critical-from",
                                  str(result_file), "--quiet"), "analytic model without a diffusers scheduler")
