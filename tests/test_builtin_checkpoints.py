"""The shipped built-in checkpoints (builtin:digits, builtin:textures) and their data builders.

Checks the folders load through diffusers as ordinary pipeline folders, agree with the recorded
training config, ship a classifier that meets its recorded accuracy, and generate samples the
classifier recognises (CFG, few DDIM steps: the whole file runs in well under a minute on CPU).
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import torch

from diffcrit.models.classifiers import load_classifier
from diffcrit.training import CHECKPOINTS
from diffcrit.training import data as datasets

NAMES = ["digits", "textures"]
MAX_BYTES = 10 * 1024 * 1024
# Floors well below the shipped figures (see each MODEL_CARD.md) but far above chance.
HELDOUT_FLOOR = {"digits": 0.95, "textures": 0.90}
CFG_FLOOR = {"digits": 0.7, "textures": 0.7}
CFG_SCALE = 1.5  # the shipped grids' scale; larger w degrades the digits model (see its card)
CFG_PER_CLASS = {"digits": 4, "textures": 8}
REQUIRED_FILES = [
    "model_index.json", "unet/config.json", "unet/diffusion_pytorch_model.safetensors",
    "scheduler/scheduler_config.json", "classifier/config.json", "classifier/model.safetensors",
    "MODEL_CARD.md", "train_config.json", "loss.csv", "samples.png",
]


def folder(name: str) -> Path:
    return Path(CHECKPOINTS[name]["path"])


def train_config(name: str) -> dict:
    return json.loads((folder(name) / "train_config.json").read_text())


@pytest.fixture(scope="module", params=NAMES)
def loaded(request):
    """(name, unet, scheduler) loaded the way any local pipeline folder is."""
    from diffusers import DDPMScheduler, UNet2DModel

    torch.set_num_threads(min(2, torch.get_num_threads()))
    name = request.param
    unet = UNet2DModel.from_pretrained(folder(name), subfolder="unet").eval()
    scheduler = DDPMScheduler.from_pretrained(folder(name), subfolder="scheduler")
    return name, unet, scheduler


# --- Folder contents and registry.


@pytest.mark.parametrize("name", NAMES)
def test_folder_has_every_file_and_fits_size(name):
    root = folder(name)
    missing = [f for f in REQUIRED_FILES if not (root / f).is_file()]
    assert not missing, f"{name}: missing {missing}"
    size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    assert size <= MAX_BYTES, f"{name}: {size / 1e6:.1f} MB on disk"
    index = json.loads((root / "model_index.json").read_text())
    assert index["_class_name"] == "DDPMPipeline"
    assert index["unet"] == ["diffusers", "UNet2DModel"]


@pytest.mark.parametrize("name", NAMES)
def test_registry_entry_matches_training(name):
    entry, cfg = CHECKPOINTS[name], train_config(name)
    assert set(entry) >= {"path", "summary", "conditioning", "classes", "null_class", "shape"}
    assert entry["classes"] == cfg["classes"]
    assert entry["null_class"] == cfg["null_class"] == len(cfg["classes"])
    assert entry["shape"] == cfg["shape"]
    assert f"null {entry['null_class']}" in entry["conditioning"]


def test_unet_and_scheduler_agree_with_train_config(loaded):
    name, unet, scheduler = loaded
    cfg = train_config(name)
    for key, value in cfg["unet"].items():
        got = unet.config[key]
        assert (list(got) if isinstance(got, (list, tuple)) else got) == value, key
    for key, value in cfg["scheduler"].items():
        assert scheduler.config[key] == value, key
    assert unet.config.num_class_embeds == cfg["null_class"] + 1
    assert [unet.config.in_channels, unet.config.sample_size, unet.config.sample_size] == \
        cfg["shape"]
    assert any("Attn" in block for block in unet.config.down_block_types)
    # v-prediction: an eps network's error reaches D(y) sigma-fold (decided fraction >> 1 at the
    # first steps, docs/design.md §5); see the card's "Consistency of D(y)".
    assert scheduler.config.prediction_type == "v_prediction"
    assert scheduler.config.num_train_timesteps == 1000
    res = cfg["results"]
    assert res["n_parameters"] == sum(p.numel() for p in unet.parameters())
    assert res["wall_time_s"] > 0 and math.isfinite(res["final_loss"])


@pytest.mark.parametrize("name", NAMES)
def test_loss_log_and_card(name):
    cfg = train_config(name)
    with open(folder(name) / "loss.csv") as f:
        rows = list(csv.DictReader(f))
    steps = [int(r["step"]) for r in rows]
    assert steps == sorted(steps) and steps[-1] == cfg["train"]["steps"]
    assert float(rows[-1]["loss"]) < float(rows[0]["loss"])
    card = (folder(name) / "MODEL_CARD.md").read_text()
    assert f"builtin:{name}" in card
    assert f"{cfg['results']['final_loss']:.4f}" in card
    assert f"{cfg['results']['classifier']['heldout_accuracy']:.3f}" in card
    assert "Critical time" in card
    assert f"prediction_type, `{cfg['scheduler']['prediction_type']}`" in card


@pytest.mark.parametrize("name", NAMES)
def test_recorded_decided_fraction_is_consistent(name):
    """Total variance (docs/design.md §5): max over steps of f_n <= 1.25 on shells 0-3, for 25, 50 and
    100 steps and two disjoint seeds, as recorded by ``python -m diffcrit.training consistency``."""
    from diffcrit.training.measure import CONSISTENCY_SEEDS, CONSISTENCY_STEPS, DECIDED_FRACTION_LIMIT

    block = train_config(name)["decided_fraction"]
    assert block["prediction_type"] == train_config(name)["scheduler"]["prediction_type"]
    runs = {(r["steps"], r["seed"]) for r in block["runs"]}
    assert runs == {(n, s) for n in CONSISTENCY_STEPS for s in CONSISTENCY_SEEDS}
    assert len(block["max"]) >= 4
    assert max(block["max"][:4]) <= DECIDED_FRACTION_LIMIT, block["max"]
    assert f"**{max(block['max']):.2f}**" in (folder(name) / "MODEL_CARD.md").read_text()


# --- Classifier and sample quality.


def heldout_data(name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Rebuild the classifier's held-out set from the recorded split."""
    cfg = train_config(name)
    split = cfg["classifier"]["split"]
    if split["kind"] == "random":
        x, y = datasets.digits_dataset(**cfg["data"]["kwargs"])
        _, ho = datasets.holdout_split(len(x), split["heldout_fraction"], split["seed"])
        return x[ho], y[ho]
    kw = cfg["data"]["kwargs"]
    return datasets.textures_dataset(split["n_heldout_per_class"], size=kw["size"],
                                     rows=tuple(split["heldout_rows"]),
                                     seed=split["seed_heldout"], downscale=kw["downscale"])


@pytest.mark.parametrize("name", NAMES)
def test_classifier_reproduces_recorded_heldout_accuracy(name):
    clf = load_classifier(folder(name))
    assert clf.classes == CHECKPOINTS[name]["classes"]
    assert clf.heldout_accuracy >= HELDOUT_FLOOR[name]
    x, y = heldout_data(name)
    with torch.no_grad():
        logits = clf(x)
    assert logits.shape == (len(x), len(clf.classes))
    acc = float((logits.argmax(1) == y).float().mean())
    assert acc == pytest.approx(clf.heldout_accuracy, abs=2.0 / len(x))


def test_cfg_samples_are_recognised(loaded):
    from diffcrit.training.sampling import class_rows, sample_cfg

    name, unet, scheduler = loaded
    entry = CHECKPOINTS[name]
    clf = load_classifier(folder(name))
    labels = class_rows(len(entry["classes"]), CFG_PER_CLASS[name])
    x = sample_cfg(unet, scheduler.config, labels, entry["null_class"], guidance_scale=CFG_SCALE,
                   num_inference_steps=20, seed=100)
    assert x.shape == (len(labels), *entry["shape"])
    assert x.min() >= -1.0 and x.max() <= 1.0
    with torch.no_grad():
        acc = float((clf(x).argmax(1) == labels).float().mean())
    chance = 1.0 / len(entry["classes"])
    assert acc >= CFG_FLOOR[name], f"{name}: CFG accuracy {acc:.2f} (chance {chance:.2f})"


def test_jvp_through_attention_matches_finite_differences(loaded):
    """Forward-mode AD runs through the shipped network, attention included (math SDPA)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    name, unet, _ = loaded
    shape = CHECKPOINTS[name]["shape"]
    # Known forward-AD blocker (docs/design.md §3): GroupNorm on a non-contiguous tangent.
    hooks = [m.register_forward_pre_hook(lambda _, args: (args[0].contiguous(), *args[1:]))
             for m in unet.modules() if isinstance(m, torch.nn.GroupNorm)]
    g = torch.Generator().manual_seed(0)
    x = torch.randn((2, *shape), generator=g)
    v = torch.randn((2, *shape), generator=g)
    timestep = torch.tensor([400, 400])
    labels = torch.tensor([1, CHECKPOINTS[name]["null_class"]])

    def f(inp):
        return unet(inp, timestep, class_labels=labels).sample

    try:
        with torch.no_grad(), sdpa_kernel(SDPBackend.MATH):
            _, jv = torch.func.jvp(f, (x,), (v,))
            h = 1e-2
            fd = (f(x + h * v) - f(x - h * v)) / (2 * h)
    finally:
        for hook in hooks:
            hook.remove()
    assert torch.linalg.vector_norm(jv - fd) <= 1e-3 * torch.linalg.vector_norm(fd)


# --- Data builders.


def test_digits_dataset_is_deterministic_and_shaped():
    x, y = datasets.digits_dataset()
    x2, y2 = datasets.digits_dataset()
    assert x.shape == (1797, 1, 16, 16) and x.dtype == torch.float32
    assert y.shape == (1797,) and y.dtype == torch.int64
    assert torch.equal(x, x2) and torch.equal(y, y2)
    assert x.min() >= -1.0 and x.max() <= 1.0 and x.min() == -1.0
    assert sorted(y.unique().tolist()) == list(range(10))


def test_textures_dataset_is_deterministic_and_shaped():
    x, y = datasets.textures_dataset(n_per_class=16, seed=3)
    x2, y2 = datasets.textures_dataset(n_per_class=16, seed=3)
    x3, _ = datasets.textures_dataset(n_per_class=16, seed=4)
    assert x.shape == (48, 1, 32, 32) and x.dtype == torch.float32
    assert torch.equal(x, x2) and torch.equal(y, y2) and not torch.equal(x, x3)
    assert y.tolist() == [0] * 16 + [1] * 16 + [2] * 16
    assert x.min() >= -1.0 and x.max() <= 1.0


def test_texture_crops_stay_in_their_row_band():
    img = torch.arange(64.0).repeat_interleave(64).reshape(64, 64)  # value = row index
    crops = datasets.random_crops(img, 50, 8, (0.75, 1.0), torch.Generator().manual_seed(0))
    assert crops.shape == (50, 1, 8, 8) and crops.min() >= 48
    with pytest.raises(ValueError, match="thinner"):
        datasets.random_crops(img, 1, 32, (0.75, 1.0), torch.Generator())


def test_holdout_split_is_a_seeded_partition():
    tr, ho = datasets.holdout_split(100, 0.2, seed=0)
    assert len(ho) == 20 and len(tr) == 80
    assert sorted(torch.cat([tr, ho]).tolist()) == list(range(100))
    assert torch.equal(ho, datasets.holdout_split(100, 0.2, seed=0)[1])


# --- Training code on a tiny model built in code.


def tiny_unet(n_classes: int = 3):
    from diffcrit.training.train import build_unet

    return build_unet({"sample_size": 8, "in_channels": 1, "out_channels": 1,
                       "block_out_channels": [8, 16], "layers_per_block": 1,
                       "down_block_types": ["DownBlock2D", "AttnDownBlock2D"],
                       "up_block_types": ["AttnUpBlock2D", "UpBlock2D"], "norm_num_groups": 4,
                       "attention_head_dim": 8, "num_class_embeds": n_classes + 1}, seed=0)


def test_training_loop_is_seeded():
    from diffusers import DDPMScheduler

    from diffcrit.training.train import _TRAIN, train_diffusion

    x = torch.rand((12, 1, 8, 8), generator=torch.Generator().manual_seed(0)) * 2 - 1
    y = torch.arange(12) % 3
    tc = {**_TRAIN, "steps": 3, "batch": 4, "warmup": 1, "log_every": 1}
    runs = [train_diffusion(tiny_unet(), DDPMScheduler(), x, y, 3, tc, log=lambda _: None)
            for _ in range(2)]
    (ema_a, rows_a), (ema_b, rows_b) = runs
    assert [r["loss"] for r in rows_a] == [r["loss"] for r in rows_b] and len(rows_a) == 3
    for p, q in zip(ema_a.parameters(), ema_b.parameters(), strict=True):
        assert torch.equal(p, q)


def test_v_target_gives_back_x0_through_the_adapter():
    """v = sqrt(ab) eps - sqrt(1-ab) x0; the exact v through diffcrit's v_prediction adapter at
    y = x_t / sqrt(ab), sigma^2 = (1-ab)/ab is x0 (docs/design.md §2), at every noise level."""
    from diffusers import DDPMScheduler

    from diffcrit.models.prediction import output_to_denoised
    from diffcrit.training.train import _SCHEDULER, regression_target

    scheduler = DDPMScheduler(**_SCHEDULER)
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn((4, 1, 8, 8), generator=g), torch.randn((4, 1, 8, 8), generator=g)
    timesteps = torch.tensor([0, 400, 980, 999])
    v = regression_target(scheduler, x0, eps, timesteps)
    ab = scheduler.alphas_cumprod[timesteps].double().view(-1, 1, 1, 1)
    torch.testing.assert_close(v.double(), ab.sqrt() * eps - (1 - ab).sqrt() * x0)
    x_t = scheduler.add_noise(x0, eps, timesteps).double()
    sigma = ((1 - ab) / ab).sqrt().flatten()
    d = output_to_denoised(v.double(), x_t / ab.sqrt(), sigma, "v_prediction")
    torch.testing.assert_close(d, x0.double(), rtol=0, atol=1e-4)
    assert torch.equal(regression_target(DDPMScheduler(), x0, eps, timesteps), eps)
    with pytest.raises(ValueError, match="allowed"):
        regression_target(DDPMScheduler(prediction_type="sample"), x0, eps, timesteps)


def test_lr_schedule_warms_up_then_decays_to_floor():
    from diffcrit.training.train import lr_at

    assert lr_at(1, 100, 10, 0.1) == pytest.approx(0.1)
    assert lr_at(10, 100, 10, 0.1) == pytest.approx(1.0)
    assert lr_at(100, 100, 10, 0.1) == pytest.approx(0.1)
    assert lr_at(50, 100, 10, 0.1) < lr_at(20, 100, 10, 0.1)


def test_cfg_sampler_does_not_depend_on_batch_composition():
    """docs/design.md §9: sample i draws its noise from seed + i, so a sample alone equals itself
    in a batch."""
    from diffusers import DDPMScheduler

    from diffcrit.training.sampling import sample_cfg

    unet = tiny_unet().eval()
    config = DDPMScheduler(beta_schedule="squaredcos_cap_v2").config
    both = sample_cfg(unet, config, torch.tensor([0, 2]), 3, 2.0, 5, seed=7)
    alone = sample_cfg(unet, config, torch.tensor([0]), 3, 2.0, 5, seed=7)
    assert both.shape == (2, 1, 8, 8)
    torch.testing.assert_close(both[:1], alone, rtol=1e-5, atol=1e-5)


def test_training_cli_rejects_unknown_names():
    from diffcrit.training.__main__ import main

    with pytest.raises(SystemExit) as err:
        main(["train", "nope"])
    assert err.value.code == 2
    assert main(["train", "digits", "--steps", "0"]) == 2
