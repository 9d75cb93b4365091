"""`diffcrit guide`: guidance pulses, equivalence with diffusers, paired statistics, CLI."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, DiTPipeline, HeunDiscreteScheduler, UNet2DModel
from safetensors.torch import load_file

import diffcrit
from diffcrit.guidance import alignment
from diffcrit.errors import UserError
from diffcrit.guidance.pulses import (ARM_RANDOM, ARM_RANDOM_STEPS, Arm, arm_names, build_arms, random_step_windows,
                                      random_windows, sample_arm, step_t_grid)
from diffcrit.models.cond import GUIDANCE
from diffcrit.models.denoisers import DiffusersDenoiser
from diffcrit.sampling.steppers import scheduler_steps
from diffcrit.guidance.engine import guide, load_guided_model, make_guide_config, step_grid
from diffcrit.report.document import validate_document
from diffcrit.report.figures import plot_results
from result_factory import make_analyze_result, make_guide_result
from tiny_models import CLASSES, save_ddpm_pipeline
import cli_checks
from cli_checks import one_line_error

N_CLASSES = CLASSES  # tiny class-conditional UNet: num_class_embeds = 5, null id 4 (the last embedding)
FAST = dict(steps=8, device="cpu", bootstrap=0)


def generators(n, seed=0):
    return [torch.Generator("cpu").manual_seed(seed + i) for i in range(n)]


@pytest.fixture(scope="module")
def trailing_ddim_folder(tmp_path_factory):
    return save_ddpm_pipeline(tmp_path_factory.mktemp("ddim_cond"), DDIMScheduler, num_class_embeds=N_CLASSES + 1,
                              timestep_spacing="trailing")


# ---------------------------------------------------------------------------------------------
# Equivalence with diffusers and with the unguided sampler


def test_at_all_equals_dit_pipeline_with_guidance(dit_folder):
    pipe = DiTPipeline.from_pretrained(dit_folder)
    # DiTPipeline hard-codes the null id 1000 (ImageNet DiT's num_embeds_ada_norm); this tiny DiT
    # has 10 classes, so its null row is 10: map 1000 -> 10 as the pipeline would for its own size.
    null, forward = pipe.transformer.config.num_embeds_ada_norm, pipe.transformer.forward
    pipe.transformer.forward = lambda *a, class_labels=None, **k: forward(
        *a, class_labels=torch.where(class_labels == 1000, null, class_labels), **k)
    latents, decode = {}, pipe.vae.decode
    pipe.vae.decode = lambda z, *a, **k: (latents.setdefault("z", z.clone()), decode(z, *a, **k))[1]
    pipe(class_labels=[3, 5, 7], guidance_scale=4.0, generator=generators(3), num_inference_steps=6, output_type="np")
    expected = latents["z"] * pipe.vae.config.scaling_factor  # the pipeline divides by it before decoding
    result = guide(str(dit_folder), at="all", classes=[3, 5, 7], samples=3, guidance_scale=4.0, **{**FAST, "steps": 6})
    torch.testing.assert_close(result.samples["all"], expected, atol=1e-5, rtol=1e-5)


@torch.no_grad()
def cfg_reference(unet, scheduler, labels: torch.Tensor, null_class: int, scale: float, steps: int, seed: int):
    """A plain CFG loop written out as the DDIM pipeline runs it (independent of diffcrit's sampling loop):
    eps = eps_u + S (eps_c - eps_u), sample i's noise from a CPU generator seeded seed + i."""
    from diffusers.utils.torch_utils import randn_tensor

    scheduler.set_timesteps(steps)
    shape = (len(labels), unet.config.in_channels, unet.config.sample_size, unet.config.sample_size)
    x = randn_tensor(shape, generator=[torch.Generator().manual_seed(seed + i) for i in range(len(labels))])
    both = torch.cat([labels, torch.full_like(labels, null_class)])
    for timestep in scheduler.timesteps:
        out_c, out_u = unet(torch.cat([x, x]), timestep, class_labels=both).sample.chunk(2)
        x = scheduler.step(out_u + scale * (out_c - out_u), timestep, x).prev_sample
    return x


def test_at_all_equals_unet_cfg_reference(trailing_ddim_folder):
    """The built-ins' convention: eps = eps_u + S (eps_c - eps_u) with the last class id as null."""
    from diffusers import DDIMScheduler

    unet = UNet2DModel.from_pretrained(trailing_ddim_folder / "unet").eval()
    scheduler = DDIMScheduler.from_pretrained(trailing_ddim_folder / "scheduler")
    labels = torch.tensor([0, 1, 2, 3])
    expected = cfg_reference(unet, scheduler, labels, N_CLASSES, 2.5, FAST["steps"], seed=0)
    result = guide(str(trailing_ddim_folder), at="all", samples=4, guidance_scale=2.5, **FAST)
    torch.testing.assert_close(result.samples["all"], expected, atol=1e-5, rtol=1e-5)


def test_training_sampler_equals_the_cfg_reference(trailing_ddim_folder):
    """The training helper's sample grids run on the one sampling loop and still equal a plain CFG loop."""
    from diffcrit.training.sampling import ddim_from, sample_cfg

    unet = UNet2DModel.from_pretrained(trailing_ddim_folder / "unet").eval()
    scheduler_config = json.loads((trailing_ddim_folder / "scheduler" / "scheduler_config.json").read_text())
    labels = torch.tensor([0, 1, 2, 3])
    expected = cfg_reference(unet, ddim_from(scheduler_config), labels, N_CLASSES, 2.5, 8, seed=0)
    got = sample_cfg(unet, scheduler_config, labels, N_CLASSES, guidance_scale=2.5, num_inference_steps=8, seed=0)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_at_none_equals_the_unguided_sampler(cond_folder):
    reference = diffcrit.analyze(str(cond_folder), samples=3, class_label=2, probe_samples=1, directions=1, shells=2,
                                 **FAST)
    result = guide(str(cond_folder), at="none", class_label=2, samples=3, **FAST)
    torch.testing.assert_close(result.samples["none"], reference.samples, atol=1e-6, rtol=0)


def test_batch_size_does_not_change_the_samples(cond_folder):
    options = dict(at="0.3:0.5", compare=[ARM_RANDOM], samples=4, **FAST)
    whole, split = guide(str(cond_folder), batch_size=4, **options), guide(str(cond_folder), batch_size=1, **options)
    for name in whole.samples:
        torch.testing.assert_close(whole.samples[name], split.samples[name], atol=1e-5, rtol=0)


# ---------------------------------------------------------------------------------------------
# Pulses: guidance exactly on the in-window steps


def forward_batch_sizes(module):
    sizes = []
    handle = module.register_forward_pre_hook(lambda mod, args: sizes.append(args[0].shape[0]))
    return sizes, handle


def test_explicit_window_doubles_the_batch_exactly_on_its_steps(cond_folder):
    config = make_guide_config(samples=3, **FAST)
    loaded, guidance = load_guided_model(str(cond_folder), config, None)
    t = np.array([info.t for info in step_grid(loaded, 8)])
    lo, hi = float(t[5]) - 1e-6, float(t[3]) + 1e-6  # steps 3, 4, 5
    arm = Arm("window", np.tile([lo, hi], (3, 1)))
    sizes, handle = forward_batch_sizes(loaded.module)
    sample_arm(loaded, guidance, arm, torch.tensor([0, 1, 2]), 3.0, 8, 0, 3)
    handle.remove()
    assert sizes == [6 if 3 <= i <= 5 else 3 for i in range(8)]


def labels_per_forward(module):
    """Records the class labels of every forward of a UNet2DModel."""
    seen = []
    handle = module.register_forward_pre_hook(lambda mod, args, kwargs: seen.append(kwargs["class_labels"].tolist()),
                                              with_kwargs=True)
    return seen, handle


@pytest.mark.parametrize("scale", [1.0, 3.0])
def test_unconditional_base_gives_the_class_only_inside_the_window(cond_folder, scale):
    """--base unconditional: the null class (4) outside the window; inside, the class at S = 1 (one forward) or CFG
    (the batch doubled with null rows)."""
    config = make_guide_config(samples=3, base="unconditional", guidance_scale=scale, **FAST)
    loaded, guidance = load_guided_model(str(cond_folder), config, None)
    t = np.array([info.t for info in step_grid(loaded, 8)])
    arm = Arm("window", np.tile([float(t[5]) - 1e-6, float(t[3]) + 1e-6], (3, 1)))  # steps 3, 4, 5
    seen, handle = labels_per_forward(loaded.module)
    sample_arm(loaded, guidance, arm, torch.tensor([0, 1, 2]), scale, 8, 0, 3, base="unconditional")
    handle.remove()
    inside = [0, 1, 2] if scale == 1 else [0, 1, 2, 4, 4, 4]
    assert seen == [inside if 3 <= i <= 5 else [4, 4, 4] for i in range(8)]


def test_unconditional_base_none_arm_is_the_null_class_sampler(cond_folder):
    reference = diffcrit.analyze(str(cond_folder), samples=3, class_label=N_CLASSES, probe_samples=1, directions=1,
                                 shells=2, **FAST)
    result = guide(str(cond_folder), at="none", base="unconditional", class_label=2, samples=3, **FAST)
    torch.testing.assert_close(result.samples["none"], reference.samples, atol=1e-6, rtol=0)
    assert result.document["base"] == "unconditional"
    labelled = guide(str(cond_folder), at="all", compare=["none"], base="unconditional", guidance_scale=1.0,
                     class_label=2, samples=3, **FAST)  # S = 1 at every step: the conditional sampler of class 2
    conditional = guide(str(cond_folder), at="none", class_label=2, samples=3, **FAST)
    torch.testing.assert_close(labelled.samples["all"], conditional.samples["none"], atol=1e-6, rtol=0)
    with pytest.raises(UserError, match="> 1"):
        make_guide_config(guidance_scale=1.0)  # on a conditional base S = 1 is no pulse at all
    with pytest.raises(UserError, match="`base` must be one of"):
        make_guide_config(base="sometimes")


def test_random_windows_guide_each_sample_on_its_own_steps(cond_folder):
    config = make_guide_config(samples=5, **FAST)
    loaded, guidance = load_guided_model(str(cond_folder), config, None)
    t = np.array([info.t for info in step_grid(loaded, 8)])
    treatment, control = build_arms(["0.3:0.45", ARM_RANDOM], 5, t, None, 1.0, seed=0)
    sizes, handle = forward_batch_sizes(loaded.module)
    sample_arm(loaded, guidance, control, torch.arange(5) % N_CLASSES, 3.0, 8, 0, 5)
    handle.remove()
    assert sizes == [5 + int(control.guided(ti).sum()) for ti in t]
    width = treatment.windows[0, 1] - treatment.windows[0, 0]
    np.testing.assert_allclose(control.windows[:, 1] - control.windows[:, 0], width)
    outside = (control.windows[:, 1] <= 0.3) | (control.windows[:, 0] >= 0.45)
    inside_range = (control.windows[:, 0] >= t.min()) & (control.windows[:, 1] <= t.max())
    assert outside.all() and inside_range.all()


def test_random_windows_are_per_sample_and_reproducible():
    a = random_windows(6, 0.5, (1.0, 1.5), (0.0, 5.0), seed=3)
    b = random_windows(8, 0.5, (1.0, 1.5), (0.0, 5.0), seed=3)
    np.testing.assert_array_equal(a, b[:6])  # sample i's window depends on seed + i only
    assert len(np.unique(a[:, 0])) == 6
    with pytest.raises(UserError, match="no window of width"):
        random_windows(2, 2.0, (1.0, 3.0), (0.0, 4.0), seed=0)


def test_random_step_blocks_match_the_treatment_step_count():
    t_grid = np.linspace(3.0, 0.0, 31) ** 2 / 3  # dense at small t, like a VP schedule
    treatment = (0.5, 1.2)
    inside = (t_grid >= 0.5) & (t_grid <= 1.2)
    arms = build_arms(["0.5:1.2", ARM_RANDOM, ARM_RANDOM_STEPS], 40, t_grid, None, 1.0, seed=0)
    blocks = arms[2]
    assert (blocks.guided_steps(t_grid) == inside.sum()).all()
    for lo, hi in blocks.windows:
        assert not (((t_grid >= lo) & (t_grid <= hi)) & inside).any()
    assert len(np.unique(blocks.windows[:, 0])) > 3
    np.testing.assert_array_equal(random_step_windows(5, treatment, t_grid, 0), blocks.windows[:5])
    # a random window of equal width in t guides a different number of steps: why both controls exist
    assert not (arms[1].guided_steps(t_grid) == inside.sum()).all()


@pytest.fixture(scope="module")
def heun_folder(tmp_path_factory):
    """The tiny class-conditional UNet with a Heun scheduler: two model evaluations per step."""
    return save_ddpm_pipeline(tmp_path_factory.mktemp("heun_cond"), HeunDiscreteScheduler,
                              num_class_embeds=N_CLASSES + 1)


def guidance_per_evaluation(monkeypatch):
    """Records, for every model evaluation guide makes, which samples are guided ((B,) bool)."""
    seen = []
    model_output = DiffusersDenoiser.model_output

    def recorded(self, x, timestep, cond=None):
        seen.append(cond[GUIDANCE]["scale"].cpu() != 1.0)
        return model_output(self, x, timestep, cond)

    monkeypatch.setattr(DiffusersDenoiser, "model_output", recorded)
    return seen


def test_heun_pulses_guide_whole_steps(heun_folder, monkeypatch):
    """A Heun step evaluates the model twice: both evaluations are guided or neither (the decision is taken at the
    step's first evaluation), and the treatment and the random-steps control guide the same number of steps."""
    steps, n = 10, 4
    loaded, _ = load_guided_model(str(heun_folder), make_guide_config(**{**FAST, "steps": steps}), None)
    infos = step_grid(loaded, steps)
    step_of, t = scheduler_steps(infos), step_t_grid(infos)
    assert len(infos) == 2 * steps - 1 and len(t) == steps
    # steps 3..5; the second evaluation of step 2 is at step 3's sigma, inside the window too
    window = f"{t[5] - 1e-6}:{t[3] + 1e-6}"
    assert infos[step_of.index(2) + 1].t == pytest.approx(t[3])
    seen = guidance_per_evaluation(monkeypatch)
    result = guide(str(heun_folder), at=window, compare=[ARM_RANDOM_STEPS, "none"], samples=n,
                   **{**FAST, "steps": steps})
    arms = result.document["arms"]
    assert [a["name"] for a in arms] == [window, ARM_RANDOM_STEPS, "none"] and len(seen) == 3 * len(infos)
    treatment, control = (torch.stack(seen[k * len(infos): (k + 1) * len(infos)]) for k in range(2))  # (E, n)
    for guided in (treatment, control):
        for k in range(1, len(infos)):
            if step_of[k] == step_of[k - 1]:  # the two evaluations of one step
                assert torch.equal(guided[k], guided[k - 1])
    per_step = lambda guided: guided[[step_of.index(s) for s in range(steps)]]  # noqa: E731  (S, n)
    assert per_step(treatment).sum(0).tolist() == [3] * n
    assert per_step(control).sum(0).tolist() == [3] * n
    assert not (per_step(treatment) & per_step(control)).any()  # the control's blocks avoid the treatment's steps
    for arm in arms[:2]:
        assert arm["guided_steps_mean"] == 3 and arm["guided_steps_range"] == [3, 3]


def test_heun_suggestion_is_in_steps(heun_folder, critical_json):
    """--suggest on a Heun scheduler: steps and step_count in scheduler steps, the timesteps of both evaluations."""
    from diffcrit.guidance.engine import suggest

    interval = suggest(str(heun_folder), critical_from=critical_json, window_width=0.3, steps=10,
                       device="cpu")["interval"]
    loaded, _ = load_guided_model(str(heun_folder), make_guide_config(steps=10, device="cpu"), None)
    infos = step_grid(loaded, 10)
    t = np.array([info.t for info in infos[::2]])  # Heun: step s evaluates at 2s (first) and 2s + 1 (second)
    inside = np.flatnonzero((t >= interval["t"][0]) & (t <= interval["t"][1]))
    assert interval["steps"] == [inside[0], inside[-1]] and interval["step_count"] == len(inside) > 1
    assert interval["timesteps"] == [info.timestep for info in infos[2 * inside[0]: 2 * inside[-1] + 2]]


def test_family_specifics(cond_folder, dit_folder):
    config = make_guide_config(**FAST)
    _, unet = load_guided_model(str(cond_folder), config, None)
    _, dit = load_guided_model(str(dit_folder), config, None)
    assert (unet.family, unet.n_classes, unet.null_class) == ("unet", 4, 4)
    assert (dit.family, dit.n_classes, dit.null_class) == ("dit", 10, 10)


# ---------------------------------------------------------------------------------------------
# Statistics on synthetic paired data


def test_a_known_paired_difference_is_detected():
    rng = np.random.default_rng(0)
    base = rng.uniform(0.2, 0.6, 200)
    better = base + 0.1 + 0.05 * rng.standard_normal(200)
    c = alignment.paired_comparison(better, base, repeats=1000, seed=0)
    assert c["diff_mean"] == pytest.approx(0.1, abs=0.02) and c["test"] == alignment.TEST_SIGN_FLIP
    assert c["ci95"][0] > 0.05 and c["ci95"][1] < 0.15
    assert c["p_value"] <= 1 / alignment.PERMUTATIONS * 2 and c["effect_size"] > 0.8  # no flip reaches it
    assert "wilcoxon_p" not in c


def test_identical_arms_give_p_one_and_no_effect():
    values = np.random.default_rng(1).uniform(size=50)
    for test in (alignment.TEST_SIGN_FLIP, alignment.TEST_MCNEMAR):
        same = (values > 0.5).astype(float) if test == alignment.TEST_MCNEMAR else values
        c = alignment.paired_comparison(same, same.copy(), repeats=500, seed=0, test=test)
        assert c["diff_mean"] == 0 and c["ci95"] == [0.0, 0.0]
        assert c["p_value"] == 1.0 and c["effect_size"] == 0.0


def test_symmetric_noise_is_not_significant():
    rng = np.random.default_rng(2)
    a, b = rng.uniform(size=300), rng.uniform(size=300)
    c = alignment.paired_comparison(a, b, repeats=500, seed=0)
    assert c["ci95"][0] < 0 < c["ci95"][1] and c["p_value"] > 0.05 and abs(c["effect_size"]) < 0.2


@pytest.mark.parametrize("shift", [0.0, 0.003, 0.01, 0.03])
def test_the_p_value_agrees_with_the_interval_shown(shift):
    """The issue's case: a mean difference of +0.0012 [-0.0005, +0.0036] beside a Wilcoxon p of 6e-29. The p-value
    now tests the mean whose ci95 is printed: large when the ci95 spans 0, small when it clears 0."""
    rng = np.random.default_rng(7)
    base = rng.uniform(0.9, 1.0, 500)
    d = shift + 0.05 * rng.standard_normal(500) + 0.02 * (rng.uniform(size=500) < 0.5)  # skewed: not a Wilcoxon's
    c = alignment.paired_comparison(base + d - 0.01, base, repeats=2000, seed=0)
    spans_zero = c["ci95"][0] < 0 < c["ci95"][1]
    assert (c["p_value"] > 0.05) == spans_zero, c
    assert c["p_value"] < 0.01 if c["ci95"][0] > 0.002 or c["ci95"][1] < -0.002 else True


def test_sign_flip_p_is_exact_for_few_pairs():
    # 4 pairs, all positive: of the 16 sign patterns only +/- (1, 2, 3, 4) reach |mean| = 2.5: p = 2/16
    assert alignment.sign_flip_p(np.array([1.0, 2.0, 3.0, 4.0]), seed=0) == pytest.approx(2 / 16)
    # d = (3, -1, -1): |mean| >= 1/3 for flips (3, ±1, ±1) with the sum's |.| >= 1: 8 patterns, sums 5, 3, 3, 1 (x2)
    assert alignment.sign_flip_p(np.array([3.0, -1.0, -1.0]), seed=0) == pytest.approx(1.0)


def test_mcnemar_equals_a_hand_computed_binomial():
    # 10 pairs where only a is right, 2 where only b is, 30 concordant: p = 2 * P(Bin(12, 1/2) <= 2)
    a = np.array([1] * 10 + [0] * 2 + [1] * 20 + [0] * 10, float)
    b = np.array([0] * 10 + [1] * 2 + [1] * 20 + [0] * 10, float)
    by_hand = 2 * sum(__import__("math").comb(12, k) for k in range(3)) / 2 ** 12  # = 158 / 4096
    p, only_a, only_b = alignment.mcnemar_exact_p(a, b)
    assert (only_a, only_b) == (10, 2) and p == pytest.approx(by_hand) == pytest.approx(0.0385742, abs=1e-6)
    c = alignment.paired_comparison(a, b, repeats=500, seed=0, test=alignment.TEST_MCNEMAR)
    assert c["p_value"] == pytest.approx(by_hand) and c["discordant"] == [10, 2] and c["test"] == "McNemar exact"
    assert c["diff_mean"] == pytest.approx(8 / 42)
    with pytest.raises(ValueError, match="0/1"):
        alignment.paired_comparison(a + 0.5, b, repeats=0, seed=0, test=alignment.TEST_MCNEMAR)


def test_binary_metric_and_rank_biserial_extremes():
    top1_a, top1_b = np.array([1, 1, 0, 1, 1, 0] * 10, float), np.array([0, 1, 0, 0, 1, 0] * 10, float)
    c = alignment.paired_comparison(top1_a, top1_b, repeats=500, seed=0, test=alignment.TEST_MCNEMAR)
    assert c["effect_size"] == 1.0 and c["p_value"] == pytest.approx(2 / 2 ** 20) and c["n_nonzero"] == 20
    assert alignment.rank_biserial(-np.arange(1, 5.0)) == -1.0


def test_arm_mean_ci_covers_the_mean():
    values = np.random.default_rng(3).normal(0.5, 0.1, 400)
    lo, hi = alignment.bootstrap_mean_ci(values, 1000, seed=0)
    assert lo < values.mean() < hi and hi - lo == pytest.approx(2 * 1.96 * 0.1 / 20, rel=0.25)
    assert alignment.bootstrap_mean_ci(values, 1000, seed=0) == (lo, hi)  # seeded: the same interval again
    assert alignment.bootstrap_mean_ci(np.array([0.3]), 100, seed=0) == (0.3, 0.3)
    assert alignment.bootstrap_mean_ci(values, 0, seed=0) is None


def test_metrics_from_logits():
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 5.0]])
    metrics = alignment.logits_to_metrics(logits, np.array([0, 1]))
    np.testing.assert_array_equal(metrics["top1"], [1.0, 0.0])
    assert metrics["target_prob"][0] == pytest.approx(np.exp(2) / (np.exp(2) + 2))


# ---------------------------------------------------------------------------------------------
# CLI


def run(*args):
    return cli_checks.run("guide", *args)


CLI_FAST = ["--steps", "8", "--samples", "4", "--device", "cpu", "--bootstrap", "50", "--quiet"]


def test_cli_scored_run_writes_everything(cond_folder, torchscript_classifier, critical_json, tmp_path):
    out, images, samples = tmp_path / "g.json", tmp_path / "grids", tmp_path / "s.safetensors"
    result = run("--model", str(cond_folder), "--critical-from", str(critical_json), "--window-width", "0.2",
                 "--classifier", str(torchscript_classifier), *CLI_FAST, "--out", str(out),
                 "--save-images", str(images), "--save-samples", str(samples))
    assert result.exit_code == 0, result.output[-3000:]
    document = json.loads(out.read_text())
    assert document["kind"] == "guide" and document["schema_version"] == 1 and document["scored"] is True
    import jsonschema

    from diffcrit.report.document import schema

    jsonschema.validate(document, schema("guide"))
    for key in ("diffcrit_version", "created", "model", "config", "environment", "window_width_t", "metric_names",
                "arms", "comparisons"):
        assert key in document
    assert document["critical"]["t"] == 0.45 and document["critical"]["ci95"] == pytest.approx([0.42, 0.48])
    assert "critical-from" in document["critical"]["source"]
    assert document["window_width_t"] == pytest.approx(0.2)
    assert [arm["name"] for arm in document["arms"]] == ["critical", "random", "random-steps", "none", "all"]
    for arm in document["arms"]:
        assert arm["n"] == 4 and set(arm["metrics"]) == {"target_prob", "top1"}
        assert all(set(m) >= {"mean", "ci95"} for m in arm["metrics"].values())
    assert len(document["comparisons"]) == 8
    for c in document["comparisons"]:
        assert c["arm"] == "critical"
        assert {"versus", "metric", "diff_mean", "ci95", "p_value", "test", "effect_size"} <= set(c)
        assert c["test"] == alignment.TESTS[c["metric"]] and "wilcoxon_p" not in c
    arms = ["all", "critical", "none", "random-steps", "random"]
    assert sorted(p.name for p in images.glob("*.png")) == sorted(f"{arm}.png" for arm in arms)
    for arm in arms:  # one PNG per sample, named by its seed (seeds 0..3)
        assert sorted(p.name for p in (images / arm).iterdir()) == [f"{seed:06d}.png" for seed in range(4)]
    stored = load_file(str(samples))
    assert stored["samples.critical"].shape == (4, 1, 8, 8) and stored["classes"].tolist() == [0, 1, 2, 3]
    plot_results([document], tmp_path / "g.png")
    assert (tmp_path / "g.png").stat().st_size > 0


def test_cli_without_classifier_still_runs_every_arm(cond_folder):
    result = run("--model", str(cond_folder), "--at", "0.3:0.45", "--compare", "none,all", *CLI_FAST)
    assert result.exit_code == 0, result.output[-3000:]
    document = json.loads(result.stdout)
    assert document["scored"] is False and document["metric_names"] == [] and document["comparisons"] == []
    assert "no alignment was scored" in document["note"]
    assert [arm["name"] for arm in document["arms"]] == ["0.3:0.45", "none", "all"]
    assert document["critical"]["t"] is None


@pytest.mark.parametrize("at", ["0.3:0.45", "all"])
def test_guide_documents_without_a_critical_time_or_a_window_validate(cond_folder, at):
    """critical.t is null without a t_c, window_width_t null for --at all: the schema allows both."""
    import jsonschema

    from diffcrit.report.document import schema

    result = run("--model", str(cond_folder), "--at", at, "--compare", "none", *CLI_FAST)
    assert result.exit_code == 0, result.output
    jsonschema.validate(json.loads(result.stdout), schema("guide"))


@pytest.mark.parametrize("document, fragments", [
    (make_guide_result(), ["--critical-from file", "is a guide result, not an analyze result"]),
    ({**make_analyze_result(0.45), "schema_version": 99}, ["schema_version 99", "upgrade diffcrit"]),
    ({**make_analyze_result(0.45), "critical": {"t": 0.45}}, ["does not match the analyze result schema",
                                                              "critical: 'found' is a required property"]),
])
def test_critical_from_reads_valid_analyze_results_only(cond_folder, tmp_path, document, fragments):
    path = tmp_path / "result.json"
    path.write_text(json.dumps(document))
    for extra in (["--compare", "none"], ["--suggest"]):
        one_line_error(run("--model", str(cond_folder), "--critical-from", str(path), *CLI_FAST, *extra), *fragments)


def test_cli_suggest(cond_folder, critical_json):
    result = run("--model", str(cond_folder), "--suggest", "--critical-from", str(critical_json),
                 "--window-width", "0.2", "--steps", "20", "--device", "cpu", "--quiet")
    assert result.exit_code == 0, result.output[-3000:]
    document = json.loads(result.stdout)
    interval = document["interval"]
    assert document["kind"] == "guide-suggestion" and interval["t"] == pytest.approx([0.35, 0.55])
    assert interval["sigma"][0] == pytest.approx(np.sqrt(np.expm1(0.35)))
    first, last = interval["steps"]
    assert 0 < first <= last < 19 and interval["step_count"] == last - first + 1
    assert document["critical"]["ci95"] == pytest.approx([0.42, 0.48])
    assert validate_document(document, "guide-suggestion") == "guide-suggestion"  # the shipped schema covers it


def test_measured_critical_time_comes_from_analyze(cond_folder, monkeypatch):
    # A random-weight UNet's D(y) is inconsistent at every step (decided fraction > 1.25): it has no
    # critical time, and guide says so in one line.
    with pytest.raises(UserError, match="analyze found neither a critical time nor a decision time"):
        guide(str(cond_folder), at="critical", compare=["none"], samples=2, analyze_samples=8, window_width=0.4,
              **FAST)
    from diffcrit.analysis import engine

    real = engine.analyze
    seen = {}

    def analyze_with_a_critical_time(*args, **kwargs):
        result = real(*args, **kwargs)
        seen.update(kwargs)
        result.document["critical"].update(found=True, t=0.5, ci95=[0.4, 0.6])
        return result

    monkeypatch.setattr(engine, "analyze", analyze_with_a_critical_time)
    result = guide(str(cond_folder), at="critical", compare=["none"], samples=2, analyze_samples=3, window_width=0.4,
                   **FAST)
    assert seen["seed"] == 2 and seen["samples"] == 3 and seen["class_label"] == 0
    critical = result.document["critical"]
    assert critical["source"].startswith("analyze (class 0, 3 samples, seed 2")  # seeds apart from the guide's
    assert result.document["arms"][0]["guided_steps_mean"] >= 1


def test_measured_critical_time_reuses_the_loaded_model_for_the_target_class(cond_folder, monkeypatch):
    from diffcrit.analysis import engine as analysis_engine
    from diffcrit.guidance import engine as guide_engine

    loads = []
    real_load = guide_engine.load_model
    monkeypatch.setattr(guide_engine, "load_model", lambda *a, **k: loads.append("guide") or real_load(*a, **k))
    monkeypatch.setattr(analysis_engine, "load_model", lambda *a, **k: loads.append("analyze") or real_load(*a, **k))
    real, documents = analysis_engine.analyze, []

    def analyze_with_a_critical_time(*args, **kwargs):
        result = real(*args, **kwargs)
        documents.append(result.document)
        result.document["critical"].update(found=True, t=0.5, ci95=[0.4, 0.6])
        return result

    monkeypatch.setattr(analysis_engine, "analyze", analyze_with_a_critical_time)
    guide(str(cond_folder), at="critical", compare=["none"], class_label=2, samples=2, analyze_samples=3,
          window_width=0.4, **FAST)
    assert loads == ["guide"]  # one load; analyze gets the loaded model, relabelled
    assert documents[0]["model"]["conditioning"]["class_label"] == 2
    assert documents[0]["config"]["class_label"] == 2


@pytest.mark.parametrize("args,fragments", [
    (["--at", "0.5:0.3"], ["inverted"]),
    (["--at", "0.3:0.3"], ["empty"]),
    (["--at", "5:6"], ["outside the sampled range"]),
    (["--at", "sometimes"], ["unknown arm"]),
    (["--class-label", "4"], ["out of range", "0..3"]),
    (["--classes", "0,9"], ["out of range"]),
    (["--guidance-scale", "1"], ["> 1"]),
    (["--base", "sometimes"], ["'--base': 'sometimes' is not one of", "'unconditional'"]),
    (["--scale", "1"], ["> 1"]),  # the old name, hidden
    (["--scale", "2", "--guidance-scale", "3"], ["--scale is the old name of --guidance-scale"]),
    (["--width", "0.2", "--window-width", "0.3"], ["--width is the old name of --window-width"]),
])
def test_cli_bad_input_exits_2(cond_folder, args, fragments):
    one_line_error(run("--model", str(cond_folder), "--compare", "none", *CLI_FAST, *args), *fragments)


def test_cli_model_without_classes_exits_2(ddpm_folder):
    one_line_error(run("--model", str(ddpm_folder), "--at", "all", *CLI_FAST), "class-conditional")
    one_line_error(run("--model", "builtin:mixture", "--at", "all", *CLI_FAST), "class-conditional")


def test_cli_classifier_that_does_not_match_exits_2(cond_folder, tmp_path):
    path = tmp_path / "three.pt"
    torch.jit.save(torch.jit.script(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 3))), str(path))
    common = ["--model", str(cond_folder), "--at", "all", *CLI_FAST, "--classifier", str(path)]
    one_line_error(run(*common), "3 outputs", "4 classes")
    one_line_error(run(*common, "--label-map", "0=0,1=1,2=2,3=7"), "7")
    wrong_input = tmp_path / "wrong.pt"
    torch.jit.save(torch.jit.script(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 4))), str(wrong_input))
    one_line_error(run("--model", str(cond_folder), "--at", "all", *CLI_FAST, "--classifier", str(wrong_input)),
                   "classifier failed")


def test_transformers_classifier_folder_scores(tmp_path):
    transformers = pytest.importorskip("transformers")
    config = transformers.ViTConfig(image_size=8, patch_size=4, num_channels=3, hidden_size=16, num_hidden_layers=1,
                                    num_attention_heads=2, intermediate_size=16, num_labels=N_CLASSES)
    torch.manual_seed(0)
    transformers.ViTForImageClassification(config).save_pretrained(tmp_path)
    transformers.ViTImageProcessor(size={"height": 8, "width": 8}, image_mean=[0.5] * 3,
                                   image_std=[0.5] * 3).save_pretrained(tmp_path)
    scorer = alignment.load_scorer(tmp_path, torch.device("cpu"))
    assert scorer.info["form"] == "transformers"
    assert alignment.check_scorer(scorer, N_CLASSES, [0, 1], (1, 8, 8)) == N_CLASSES  # grey images -> 3 channels
    assert alignment.classify(scorer, torch.rand(5, 1, 8, 8) * 2 - 1).shape == (5, N_CLASSES)


def test_unguidable_random_arm_is_a_user_error():
    with pytest.raises(UserError, match="random windows are drawn relative to a window"):
        arm_names("all", ["random"])
    with pytest.raises(UserError, match="not a treatment"):
        make_guide_config(at="random")


def test_shipped_guide_results_validate_against_the_guide_schema():
    import json as _json
    from pathlib import Path as _Path

    import jsonschema

    from diffcrit.report.document import schema

    results = sorted((_Path(__file__).parent.parent / "examples" / "results").glob("*-guide*.json"))
    assert results
    for path in results:
        jsonschema.validate(_json.loads(path.read_text()), schema("guide"))
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"schema_version": 1, "kind": "analyze"}, schema("guide"))


# ---------------------------------------------------------------------------------------------
# The README's guide commands, through the CLI with progress on

README = Path(__file__).resolve().parent.parent / "README.md"
DIGITS_ANALYZE = README.parent / "examples" / "results" / "digits-analyze.json"


def readme_guide_commands() -> list[list[str]]:
    """The README's `diffcrit guide --model builtin:digits ...` lines, as argument lists (comments dropped)."""
    lines = [line.split("#")[0] for line in README.read_text().splitlines()
             if line.startswith("diffcrit guide --model builtin:digits")]
    return [shlex.split(line)[1:] for line in lines]


def run_with_progress(monkeypatch, *args):
    """``diffcrit ARGS`` through CliRunner with the Rich progress bar drawn as on a terminal.

    CliRunner's stderr is not a TTY, where Rich draws nothing of a transient bar: forcing a
    terminal console renders every progress column for every event the library emits.
    """
    from rich.console import Console

    terminal = Console(stderr=True, force_terminal=True, color_system=None, width=100)
    monkeypatch.setattr("diffcrit.cli.guide.console", terminal)
    return cli_checks.run(*args)


@pytest.mark.slow
def test_readme_guide_command_runs_with_progress(monkeypatch):
    """`diffcrit guide --model builtin:digits` exactly as the README shows (about 50 s on 2 CPU cores)."""
    command = readme_guide_commands()[0]
    assert command == ["guide", "--model", "builtin:digits"]
    result = run_with_progress(monkeypatch, *command)
    assert result.exit_code == 0, result.output[-3000:]
    assert "measuring t_c" in result.stderr and "arm critical" in result.stderr  # the bar was drawn
    document = json.loads(result.stdout)
    assert document["scored"] is True and [a["name"] for a in document["arms"]][0] == "critical"


def test_readme_guide_command_with_critical_from_runs_with_progress(monkeypatch, tmp_path):
    """The README's second guide line, with the shipped digits analyze result and 6 samples instead of 500."""
    command = readme_guide_commands()[1]
    assert command == ["guide", "--model", "builtin:digits", "--critical-from", "digits.json", "--samples", "500",
                       "--out", "guide.json"]
    out = tmp_path / "guide.json"
    swap = {"digits.json": str(DIGITS_ANALYZE), "500": "6", "guide.json": str(out)}
    result = run_with_progress(monkeypatch, *[swap.get(arg, arg) for arg in command])
    assert result.exit_code == 0, result.output[-3000:]
    assert "arm critical" in result.stderr and "arm all" in result.stderr
    assert json.loads(out.read_text())["arms"][0]["n"] == 6


@pytest.mark.slow
def test_readme_guide_command_with_20_samples_runs(monkeypatch):
    """`--samples 20` ran into "no block of 29 steps fits" when the measured t_c sat low (the epsilon-prediction
    digits, t_c 0.47): a default random control that cannot fit is now left out with a note (tested on the tiny
    model below); with the v-prediction digits (t_c ≈ 2) every control fits."""
    result = run_with_progress(monkeypatch, *readme_guide_commands()[0], "--samples", "20", "--bootstrap", "100")
    assert result.exit_code == 0, result.output[-3000:]
    document = json.loads(result.stdout)
    names = [a["name"] for a in document["arms"]]
    assert names[:2] == ["critical", "random"] and names[-2:] == ["none", "all"]
    assert ("random-steps" in names) != any(n.startswith("default control random-steps left out")
                                            for n in document.get("notes", []))


def test_default_random_controls_that_do_not_fit_are_left_out(cond_folder, critical_json):
    """A window of 0.8 around t_c = 0.45 covers the tiny schedule's t range [0, 0.84] almost whole."""
    args = ["--model", str(cond_folder), "--critical-from", str(critical_json), "--width", "0.8", *CLI_FAST]
    result = run(*args)
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert [a["name"] for a in document["arms"]] == ["critical", "none", "all"]
    assert [n.split(":")[0] for n in document["notes"]] == ["default control random left out",
                                                            "default control random-steps left out",
                                                            "t_c was measured on builtin"]  # the fixture's t_c
    one_line_error(run(*args, "--compare", "random-steps,none"), "no block of", "leave random-steps out of --compare")
    one_line_error(run(*args, "--compare", "random"), "no window of width 0.8", "leave random out of --compare")


@pytest.fixture(scope="module")
def nan_folder(tmp_path_factory):
    """The tiny class-conditional pipeline with NaN output-conv weights: every model output is NaN."""
    from diffusers import DDPMPipeline, DDPMScheduler

    from tiny_models import tiny_unet

    unet = tiny_unet(N_CLASSES + 1)
    with torch.no_grad():
        unet.conv_out.weight.fill_(float("nan"))
    folder = tmp_path_factory.mktemp("nan")
    DDPMPipeline(unet=unet, scheduler=DDPMScheduler(num_train_timesteps=100)).save_pretrained(folder)
    return folder


@pytest.mark.parametrize("quiet", [True, False])
def test_nan_from_the_model_stops_guide_naming_the_step(nan_folder, torchscript_classifier, quiet):
    args = ["--model", str(nan_folder), "--at", "all", "--compare", "none", "--classifier", str(torchscript_classifier),
            *CLI_FAST]
    result = run(*(args if quiet else [a for a in args if a != "--quiet"]))
    one_line_error(result, "NaN or Inf at step 0 of arm all", "sigma=")


# ---------------------------------------------------------------------------------------------
# --sweep K: blocks of K consecutive steps


def test_sweep_blocks_tile_the_schedule_with_k_steps_each():
    from diffcrit.guidance.pulses import sweep_blocks

    assert sweep_blocks(8, 3) == [(0, 2), (3, 5), (5, 7)]  # the last block ends at the last step
    assert sweep_blocks(50, 5) == [(a, a + 4) for a in range(0, 50, 5)]
    assert sweep_blocks(4, 4) == [(0, 3)]
    assert all(b - a + 1 == 6 for a, b in sweep_blocks(50, 6)) and sweep_blocks(50, 6)[-1] == (44, 49)
    with pytest.raises(UserError, match="does not fit in 8 steps"):
        sweep_blocks(8, 9)


def test_bootstrap_peak_of_a_profile():
    rng = np.random.default_rng(0)
    centers = np.array([4.0, 3.0, 2.0, 1.0, 0.5])
    clear = (rng.uniform(size=(5, 400)) < np.array([0.2, 0.4, 0.8, 0.4, 0.2])[:, None]).astype(float)
    peak = alignment.bootstrap_peak(clear, centers, 500, seed=0)
    assert peak["index"] == 2 and peak["t"] == 2.0 and peak["ci95"] == [2.0, 2.0] and peak["share"] == 1.0
    flat = (rng.uniform(size=(5, 400)) < 0.5).astype(float)
    wide = alignment.bootstrap_peak(flat, centers, 500, seed=0)
    assert wide["ci95"][1] - wide["ci95"][0] >= 1.0 and wide["share"] < 0.9
    assert alignment.bootstrap_peak(flat, centers, 0, seed=0)["ci95"] is None


def test_cli_sweep_writes_the_profile_and_its_figure(cond_folder, torchscript_classifier, critical_json, tmp_path,
                                                     monkeypatch):
    import jsonschema

    from diffcrit.report.document import schema

    seen = guidance_per_evaluation(monkeypatch)
    result = run("--model", str(cond_folder), "--sweep", "3", "--base", "unconditional", "--critical-from",
                 str(critical_json), "--classifier", str(torchscript_classifier), *CLI_FAST)
    assert result.exit_code == 0, result.output[-3000:]
    document = json.loads(result.stdout)
    jsonschema.validate(document, schema("guide"))
    sweep = document["sweep"]
    assert sweep["block_steps"] == 3 and sweep["base"] == "unconditional" == document["base"]
    assert [p["steps"] for p in sweep["profile"]] == [[0, 2], [3, 5], [5, 7]]
    assert [a["name"] for a in document["arms"]] == ["steps 0-2", "steps 3-5", "steps 5-7", "none", "all"]
    assert [a["guided_steps_range"] for a in document["arms"]] == [[3, 3]] * 3 + [[0, 0], [8, 8]]
    for block in sweep["profile"]:
        assert block["t"][0] <= block["t_center"] <= block["t"][1]
        assert set(block["metrics"]) == {"top1", "target_prob"}
    assert sweep["peak"]["steps"] in [p["steps"] for p in sweep["profile"]] and len(sweep["peak"]["ci95"]) == 2
    assert document["comparisons"] == [] and document["critical"]["t"] == 0.45 and document["window_width_t"] is None
    per_arm = [torch.stack(seen[k * 8: (k + 1) * 8]) for k in range(5)]  # (8 steps, 4 samples) guided, per arm
    for arm, (a, b) in zip(per_arm[:3], [(0, 2), (3, 5), (5, 7)], strict=True):
        assert arm.all(dim=1).tolist() == [a <= i <= b for i in range(8)]  # every sample on the block's steps only
    plot_results([document], tmp_path / "sweep.png")
    assert (tmp_path / "sweep.png").stat().st_size > 0
    one_line_error(run("--model", str(cond_folder), "--sweep", "3", "--compare", "none", *CLI_FAST),
                   "--sweep runs its own arms")
    one_line_error(run("--model", str(cond_folder), "--sweep", "9", *CLI_FAST), "does not fit in 8 steps")


def test_sweep_table_says_where_the_profile_peaks():
    from rich.console import Console

    from diffcrit.cli.guide import render_guide

    document = json.loads((README.parent / "examples" / "results" / "digits-guide-sweep6.json").read_text())
    console = Console(width=120, record=True)
    render_guide(console, document)
    text = console.export_text()
    assert "steps 12-17" in text and "peaks at t = 1.55 [0.964, 1.55] (steps 12..17" in text
    assert "rank-biserial" not in text  # a sweep has no comparisons table


def test_cli_sample_pngs_are_the_samples_of_their_seeds(cond_folder, critical_json, tmp_path):
    """``--save-images``: ARM/SEED.png holds sample SEED's pixels, whatever range of seeds the run drew: a run from
    seed 7 and a run from seed 9 write the same 000009.png (arms whose samples depend on the seed alone)."""
    from PIL import Image

    def guided(seed: int, samples: int, name: str):
        images, stored = tmp_path / name, tmp_path / f"{name}.safetensors"
        result = run("--model", str(cond_folder), "--critical-from", str(critical_json), "--compare", "none",
                     "--class-label", "2", *CLI_FAST, "--samples", str(samples), "--seed", str(seed),
                     "--save-images", str(images), "--save-samples", str(stored))
        assert result.exit_code == 0, result.output[-3000:]
        return images, load_file(str(stored))

    wide, wide_samples = guided(7, 4, "wide")
    narrow, _ = guided(9, 2, "narrow")
    for arm in ("critical", "none"):
        assert sorted(p.name for p in (wide / arm).iterdir()) == [f"{s:06d}.png" for s in range(7, 11)]
        assert (wide / arm / "000009.png").read_bytes() == (narrow / arm / "000009.png").read_bytes()
        for i, seed in enumerate(range(7, 11)):  # the pixels: the sample in [-1, 1] at 8 bits (a pixel model)
            pixels = np.asarray(Image.open(wide / arm / f"{seed:06d}.png"))
            expected = ((wide_samples[f"samples.{arm}"][i, 0].clamp(-1, 1) + 1) * 127.5).round().byte().numpy()
            np.testing.assert_array_equal(pixels, expected)

    # a folder holding another run's samples (seeds 7..10) is refused before any work for seeds 0..1: an FID tool
    # would read them together; a rerun over the same seeds overwrites its own
    refused = run("--model", str(cond_folder), "--critical-from", str(critical_json), "--compare", "none",
                  *CLI_FAST, "--samples", "2", "--save-images", str(wide))
    assert refused.exit_code == 2 and "seeds this run does not draw" in refused.output
    assert "critical/000007.png" in refused.output or "none/000007.png" in refused.output
    guided(9, 2, "narrow")
