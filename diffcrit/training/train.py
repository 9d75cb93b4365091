"""Train the built-in class-conditional DDPM checkpoints and everything shipped beside them.

Notation (DDPM, Ho et al. 2020): x0 data, eps ~ N(0, I), integer ``timestep`` in [0, T),
ab = alphas_cumprod[timestep], x_t = sqrt(ab) x0 + sqrt(1 - ab) eps. The UNet predicts the
velocity v = sqrt(ab) eps - sqrt(1 - ab) x0 (prediction_type "v_prediction", Salimans & Ho 2022,
arXiv:2202.00512 §4), loss = mean |v_hat - v|^2; the denoised estimate is then
x0_hat = sqrt(ab) x_t - sqrt(1 - ab) v_hat.

Why not eps: with eps-prediction x0_hat = (x_t - sqrt(1 - ab) eps_hat) / sqrt(ab)
= y - sigma eps_hat (docs/design.md §2), so any error of eps_hat reaches D(y) multiplied by sigma
(34 at the first of 50 DDPM steps, 71 at the first of 100). The eps models shipped before had a
decided fraction f_n = S_D,n / S_x0,n (docs/design.md §5) of up to 40 (50 steps) and 162 (100 steps)
on the DC shell at the first step, where a consistent denoiser has f_n <= 1; with v the error
reaches D(y) multiplied by sqrt(1 - ab) <= 1, and the retrained models stay <= 1.04 on shells
0-3 at every step (``python -m diffcrit.training consistency NAME``; the card has the table).
clip_sample stays True: it only touches the samplers' x0_hat, never diffcrit's D(y).

Class conditioning through ``num_class_embeds = n_classes + 1``; the last id (n_classes) is the
null class, substituted for the true label with probability ``label_dropout`` so that one
network also gives v(x_t, null) for classifier-free guidance.

Everything is seeded; ``python -m diffcrit.training train NAME`` rebuilds a shipped folder.
Progress goes to stderr.
"""

from __future__ import annotations

import copy
import math
import platform
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

from ..models.builtins import CHECKPOINT_ROOT
from ..models.datasets import TRAINING_DATA, build_dataset
from . import data as datasets

# --- Recipes: every number the training uses, in one place; written out as train_config.json.

# One self-attention block at the lowest resolution (4x4 for both), so JVP probes cross attention.
_UNET_COMMON = {"in_channels": 1, "out_channels": 1, "layers_per_block": 1, "norm_num_groups": 8,
                "attention_head_dim": 32}
_UNET_DIGITS = {**_UNET_COMMON, "sample_size": 16, "block_out_channels": [32, 64, 64],
                "down_block_types": ["DownBlock2D", "DownBlock2D", "AttnDownBlock2D"],
                "up_block_types": ["AttnUpBlock2D", "UpBlock2D", "UpBlock2D"],
                "num_class_embeds": 11}
# Four levels, thin at 32x32 (CPU cost) and deep enough to see several texels.
_UNET_TEXTURES = {**_UNET_COMMON, "sample_size": 32, "block_out_channels": [16, 32, 64, 64],
                  "down_block_types": ["DownBlock2D", "DownBlock2D", "DownBlock2D",
                                       "AttnDownBlock2D"],
                  "up_block_types": ["AttnUpBlock2D", "UpBlock2D", "UpBlock2D", "UpBlock2D"],
                  "num_class_embeds": 4}

# One CPU thread: on a shared 2-core machine two threads ran ~4x slower per step than one
# (OpenMP barriers stall whenever another process holds a core).
_TRAIN = {"lr": 1e-3, "warmup": 200, "min_lr_ratio": 0.1, "weight_decay": 0.0,
          "grad_clip": 1.0, "ema_decay": 0.999, "label_dropout": 0.12, "seed": 0,
          "log_every": 50, "threads": 1}

_SCHEDULER = {
    "num_train_timesteps": 1000,
    "beta_schedule": "squaredcos_cap_v2",
    "prediction_type": "v_prediction",
    "clip_sample": True,
}
# The regression targets train_diffusion knows (diffusers' prediction_type names).
TARGETS = ("epsilon", "v_prediction")

# Sample checks: the grid uses ``guidance_scale``; accuracy is measured at every scale listed.
_SAMPLES = {"guidance_scale": 1.5, "eval_guidance_scales": [1.0, 1.5, 2.0, 3.0],
            "num_inference_steps": 50, "grid_per_class": 8, "eval_per_class": 32, "seed": 0}



def _classifier(n_classes: int, split: dict[str, Any]) -> dict[str, Any]:
    """The shipped classifiers' recipe: one SmallCNN and one optimiser for every built-in, its classes and split."""
    return {"arch": {"_class_name": "SmallCNN", "in_channels": 1, "n_classes": n_classes,
                     "channels": [16, 32, 64], "norm_groups": 4},
            "split": split, "steps": 1500, "batch": 64, "lr": 2e-3, "noise_std": 0.1, "seed": 0}


RECIPES: dict[str, dict[str, Any]] = {
    "digits": {
        "data": TRAINING_DATA["digits"],
        "classes": datasets.DIGIT_CLASSES,
        "unet": _UNET_DIGITS,
        "scheduler": _SCHEDULER,
        "train": {**_TRAIN, "steps": 3000, "batch": 64},
        "classifier": _classifier(10, {"kind": "random", "heldout_fraction": 0.2, "seed": 0}),
        "samples": _SAMPLES,
    },
    "textures": {
        "data": TRAINING_DATA["textures"],
        "classes": datasets.TEXTURE_CLASSES,
        "unet": _UNET_TEXTURES,
        "scheduler": _SCHEDULER,
        "train": {**_TRAIN, "steps": 3500, "batch": 32},
        "classifier": _classifier(3, {"kind": "rows", "train_rows": [0.0, 0.75], "heldout_rows": [0.75, 1.0],
                                      "n_train_per_class": 2048, "n_heldout_per_class": 512,
                                      "seed_train": 1, "seed_heldout": 2}),
        "samples": {**_SAMPLES, "eval_per_class": 64},
    },
}


def recipe(name: str) -> dict[str, Any]:
    """A deep copy of the named recipe; ValueError listing the allowed names otherwise."""
    if name not in RECIPES:
        raise ValueError(f"unknown built-in checkpoint {name!r}; allowed: {sorted(RECIPES)}")
    return copy.deepcopy(RECIPES[name])


def build_unet(unet_cfg: dict[str, Any], seed: int) -> UNet2DModel:
    """A freshly initialised UNet2DModel (weights drawn after torch.manual_seed(seed))."""
    torch.manual_seed(seed)
    return UNet2DModel(**{k: tuple(v) if isinstance(v, list) else v for k, v in unet_cfg.items()})


def lr_at(step: int, steps: int, warmup: int, min_ratio: float) -> float:
    """Learning-rate multiplier: linear warm-up over ``warmup`` steps, then cosine decay from 1
    to ``min_ratio`` at ``steps``. ``step`` counts from 1."""
    if step <= warmup:
        return step / max(warmup, 1)
    progress = (step - warmup) / max(steps - warmup, 1)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


@torch.no_grad()
def ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * model, parameter by parameter."""
    for p_ema, p in zip(ema.parameters(), model.parameters(), strict=True):
        p_ema.lerp_(p, 1.0 - decay)


def regression_target(scheduler: DDPMScheduler, x0: torch.Tensor, eps: torch.Tensor,
                      timesteps: torch.Tensor) -> torch.Tensor:
    """What the UNet regresses on for the scheduler's prediction_type: eps, or
    v = sqrt(ab) eps - sqrt(1 - ab) x0 (arXiv:2202.00512 §4). x0, eps (B, C, H, W); timesteps (B,)."""
    kind = scheduler.config.prediction_type
    if kind == "epsilon":
        return eps
    if kind == "v_prediction":
        return scheduler.get_velocity(x0, eps, timesteps)
    raise ValueError(f"unknown prediction_type {kind!r} for training; allowed: {list(TARGETS)}")


def diffusion_batch(
    x0: torch.Tensor, labels: torch.Tensor, scheduler: DDPMScheduler, null_class: int,
    label_dropout: float, batch: int, g: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Draw a training batch: (x_t, timestep, class ids with dropout to null, regression target)."""
    idx = torch.randint(0, len(x0), (batch,), generator=g)
    timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (batch,), generator=g)
    eps = torch.randn(x0[idx].shape, generator=g)
    drop = torch.rand(batch, generator=g) < label_dropout
    cls = torch.where(drop, torch.full_like(labels[idx], null_class), labels[idx])
    target = regression_target(scheduler, x0[idx], eps, timesteps)
    return scheduler.add_noise(x0[idx], eps, timesteps), timesteps, cls, target


def train_diffusion(
    unet: UNet2DModel,
    scheduler: DDPMScheduler,
    x0: torch.Tensor,
    labels: torch.Tensor,
    null_class: int,
    tc: dict[str, Any],
    log: Callable[[str], None] = lambda s: print(s, file=sys.stderr),
) -> tuple[UNet2DModel, list[dict[str, float]]]:
    """Train ``unet`` in place on the MSE to ``regression_target`` (v or eps, as the
    scheduler's prediction_type says); return (EMA copy, loss log rows).

    Loss rows average the training loss over each ``log_every`` window:
    {"step", "loss", "lr", "elapsed_s"}."""
    ema = copy.deepcopy(unet).requires_grad_(False)
    opt = torch.optim.AdamW(unet.parameters(), lr=tc["lr"], weight_decay=tc["weight_decay"])
    g = torch.Generator().manual_seed(tc["seed"] + 1)
    rows, window, t0 = [], [], time.time()
    unet.train()
    for step in range(1, tc["steps"] + 1):
        # 1. learning rate, 2. batch, 3. MSE step, 4. EMA (warm-up decay as in diffusers).
        lr = tc["lr"] * lr_at(step, tc["steps"], tc["warmup"], tc["min_lr_ratio"])
        for group in opt.param_groups:
            group["lr"] = lr
        x_t, timesteps, cls, target = diffusion_batch(
            x0, labels, scheduler, null_class, tc["label_dropout"], tc["batch"], g)
        loss = F.mse_loss(unet(x_t, timesteps, class_labels=cls).sample, target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), tc["grad_clip"])
        opt.step()
        ema_update(ema, unet, min(tc["ema_decay"], (1 + step) / (10 + step)))
        window.append(loss.item())
        if step % tc["log_every"] == 0 or step == tc["steps"]:
            rows.append({"step": step, "loss": sum(window) / len(window), "lr": lr,
                         "elapsed_s": time.time() - t0})
            window = []
            if step % (5 * tc["log_every"]) == 0 or step == tc["steps"]:
                log(f"diffusion step {step}/{tc['steps']} loss {rows[-1]['loss']:.4f} "
                    f"lr {lr:.2e} ({rows[-1]['elapsed_s']:.0f}s)")
    return ema.eval(), rows


@torch.no_grad()
def eval_loss(
    unet: UNet2DModel, scheduler: DDPMScheduler, x0: torch.Tensor, labels: torch.Tensor,
    n: int = 512, n_timesteps: int = 20, seed: int = 1234,
) -> float:
    """Conditional MSE to ``regression_target`` on a fixed set: n data items x n_timesteps evenly
    spaced timesteps, fixed noise. Comparable across runs of the same recipe and prediction type
    (final-loss figure of the card)."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(x0), generator=g)[:n]
    grid = torch.linspace(0, scheduler.config.num_train_timesteps - 1, n_timesteps).long()
    total = 0.0
    for timestep in grid.tolist():
        eps = torch.randn(x0[idx].shape, generator=g)
        ts = torch.full((len(idx),), timestep, dtype=torch.long)
        x_t = scheduler.add_noise(x0[idx], eps, ts)
        target = regression_target(scheduler, x0[idx], eps, ts)
        total += F.mse_loss(unet(x_t, ts, class_labels=labels[idx]).sample, target).item()
    return total / n_timesteps


def save_pipeline(unet: UNet2DModel, scheduler: DDPMScheduler, folder: Path) -> None:
    """Write a diffusers pipeline folder (model_index.json, unet/, scheduler/), safetensors."""
    DDPMPipeline(unet=unet, scheduler=scheduler).save_pretrained(folder, safe_serialization=True)


def environment() -> dict[str, Any]:
    """Versions and machine facts recorded next to the wall time."""
    import diffusers

    return {"torch": torch.__version__, "diffusers": diffusers.__version__,
            "python": platform.python_version(), "machine": platform.machine(),
            "torch_threads": torch.get_num_threads(), "device": "cpu"}


# --- The whole build of one built-in folder, as numbered steps.


def classifier_split(
    cfg: dict[str, Any], x: torch.Tensor, y: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, str]:
    """(x_train, y_train, x_heldout, y_heldout, description) for the recipe's classifier split:
    "random" (a seeded fraction of the diffusion data) or "rows" (texture crops from disjoint
    horizontal bands of each photo: held-out pixels are never seen by the classifier)."""
    split = cfg["classifier"]["split"]
    if split["kind"] == "random":
        tr, ho = datasets.holdout_split(len(x), split["heldout_fraction"], split["seed"])
        desc = f"seeded random {split['heldout_fraction']:.0%} held out (seed {split['seed']})"
        return x[tr], y[tr], x[ho], y[ho], desc
    if split["kind"] == "rows":
        kw = {k: v for k, v in cfg["data"]["kwargs"].items() if k not in ("rows", "seed",
                                                                       "n_per_class")}
        x_tr, y_tr = datasets.textures_dataset(split["n_train_per_class"], rows=tuple(
            split["train_rows"]), seed=split["seed_train"], **kw)
        x_ho, y_ho = datasets.textures_dataset(split["n_heldout_per_class"], rows=tuple(
            split["heldout_rows"]), seed=split["seed_heldout"], **kw)
        desc = (f"crops from rows {split['train_rows']} of each photo for training, rows "
                f"{split['heldout_rows']} held out (disjoint pixels)")
        return x_tr, y_tr, x_ho, y_ho, desc
    raise ValueError(f"unknown split kind {split['kind']!r}; allowed: ['random', 'rows']")


def fit_classifier(cfg: dict[str, Any], x: torch.Tensor, y: torch.Tensor) -> tuple[Any, dict]:
    """Train the recipe's classifier; return (model, figures for train_config.json)."""
    from .classifier_train import accuracy, per_class_accuracy, predict, train_classifier

    cc = cfg["classifier"]
    x_tr, y_tr, x_ho, y_ho, desc = classifier_split(cfg, x, y)
    t0 = time.time()
    model = train_classifier(x_tr, y_tr, cc["arch"], steps=cc["steps"], batch=cc["batch"],
                             lr=cc["lr"], noise_std=cc["noise_std"], seed=cc["seed"])
    wall = time.time() - t0
    pred_ho = predict(model, x_ho)
    return model, {
        "split_description": desc, "train_size": len(x_tr), "heldout_size": len(x_ho),
        "train_accuracy": accuracy(predict(model, x_tr), y_tr),
        "heldout_accuracy": accuracy(pred_ho, y_ho),
        "heldout_accuracy_per_class": per_class_accuracy(pred_ho, y_ho, len(cfg["classes"])),
        "wall_time_s": wall,
    }


def judge_samples(cfg: dict[str, Any], unet: UNet2DModel, classifier: Any,
                  guidance_scale: float) -> dict[str, Any]:
    """Sample ``eval_per_class`` images per class with CFG and score them with the classifier.
    Returns {"guidance_scale", "accuracy", "accuracy_per_class"}."""
    from .classifier_train import accuracy, per_class_accuracy, predict
    from .sampling import class_rows, sample_cfg

    sc, n = cfg["samples"], len(cfg["classes"])
    labels = class_rows(n, sc["eval_per_class"])
    x = sample_cfg(unet, cfg["scheduler"], labels, cfg["null_class"], guidance_scale,
                   sc["num_inference_steps"], sc["seed"])
    pred = predict(classifier, x)
    return {"guidance_scale": guidance_scale, "accuracy": accuracy(pred, labels),
            "accuracy_per_class": per_class_accuracy(pred, labels, n)}


def default_out(name: str) -> Path:
    """The shipped folder: diffcrit/models/builtins/checkpoints/<name>."""
    return CHECKPOINT_ROOT / name


def train_builtin(name: str, out: Path | None = None, steps: int | None = None,
                  log: Callable[[str], None] = lambda s: print(s, file=sys.stderr)) -> dict:
    """Build one built-in folder from its recipe: train, then ``evaluate_builtin``.
    Returns the written train_config.json."""
    from ..models.classifiers import save_classifier
    from . import CHECKPOINTS
    from .card import write_loss_csv

    # 1. Resolve the recipe (the --steps override is recorded), threads, data.
    cfg = recipe(name)
    if steps is not None:
        cfg["train"]["steps"] = int(steps)
    out = Path(out) if out is not None else default_out(name)
    torch.set_num_threads(cfg["train"]["threads"])
    x, y = build_dataset(cfg["data"])
    cfg.update(name=name, summary=CHECKPOINTS[name]["summary"], null_class=len(cfg["classes"]),
               shape=list(x.shape[1:]))
    assert cfg["unet"]["num_class_embeds"] == cfg["null_class"] + 1
    log(f"[{name}] data {tuple(x.shape)}; training {cfg['train']['steps']} steps -> {out}")

    # 2. Diffusion model (the EMA weights are shipped).
    scheduler = DDPMScheduler(**cfg["scheduler"])
    unet = build_unet(cfg["unet"], cfg["train"]["seed"])
    t0, c0 = time.time(), time.process_time()
    ema, rows = train_diffusion(unet, scheduler, x, y, cfg["null_class"], cfg["train"], log)
    wall, cpu = time.time() - t0, time.process_time() - c0
    tail = rows[-max(1, len(rows) // 20):]
    out.mkdir(parents=True, exist_ok=True)
    save_pipeline(ema, scheduler, out)
    write_loss_csv(rows, out / "loss.csv")

    # 3. Classifier on the same data, held-out accuracy.
    log(f"[{name}] classifier")
    classifier, clf = fit_classifier(cfg, x, y)
    save_classifier(classifier, {**cfg["classifier"]["arch"], "classes": cfg["classes"],
                                 "sample_size": cfg["shape"][-1], "input_range": [-1.0, 1.0],
                                 "heldout_accuracy": clf["heldout_accuracy"],
                                 "heldout_size": clf["heldout_size"],
                                 "split": clf["split_description"]}, out / "classifier")

    # 4. Record the training figures; samples and the card come from the saved folder.
    cfg["results"] = {
        "wall_time_s": wall, "cpu_time_s": cpu,
        "final_loss": sum(r["loss"] for r in tail) / len(tail),
        "final_loss_window": len(tail) * cfg["train"]["log_every"],
        "eval_loss_ema": eval_loss(ema, scheduler, x, y), "n_train_images": len(x),
        "n_parameters": sum(p.numel() for p in ema.parameters()),
        "unet_bytes": (out / "unet" / "diffusion_pytorch_model.safetensors").stat().st_size,
        "classifier": clf, "environment": environment(),
        "command": f"python -m diffcrit.training train {name}"
                   + (f" --steps {steps}" if steps is not None else ""),
    }
    write_train_config(cfg, out)
    log(f"[{name}] trained in {wall / 60:.1f} min; final loss {cfg['results']['final_loss']:.4f}; "
        f"classifier held-out accuracy {clf['heldout_accuracy']:.3f}")
    return evaluate_builtin(name, out, log)


def write_train_config(cfg: dict[str, Any], out: Path) -> None:
    """train_config.json: the exact recipe plus ``results``."""
    import json

    (out / "train_config.json").write_text(json.dumps(cfg, indent=2) + "\n")


def evaluate_builtin(name: str, out: Path | None = None,
                     log: Callable[[str], None] = lambda s: print(s, file=sys.stderr)) -> dict:
    """From a trained folder: CFG sample accuracy for each of the recipe's
    ``eval_guidance_scales``, samples.png and MODEL_CARD.md. Updates and returns
    train_config.json (training figures untouched; sample settings from the current recipe)."""
    import json

    from ..models.classifiers import load_classifier
    from .card import sample_grid_png
    from .sampling import class_rows, sample_cfg

    # 1. The folder's config, the recipe's sample settings, the shipped networks.
    out = Path(out) if out is not None else default_out(name)
    cfg = json.loads((out / "train_config.json").read_text())
    cfg["samples"] = recipe(name)["samples"]
    torch.set_num_threads(cfg["train"]["threads"])
    unet = UNet2DModel.from_pretrained(out, subfolder="unet").eval()
    classifier = load_classifier(out)
    sc = cfg["samples"]

    # 2. Sample accuracy across guidance scales, then the grid.
    log(f"[{name}] sampling: guidance scales {sc['eval_guidance_scales']}")
    sweep = [judge_samples(cfg, unet, classifier, w) for w in sc["eval_guidance_scales"]]
    labels = class_rows(len(cfg["classes"]), sc["grid_per_class"])
    grid = sample_cfg(unet, cfg["scheduler"], labels, cfg["null_class"], sc["guidance_scale"],
                      sc["num_inference_steps"], sc["seed"])
    sample_grid_png(grid, cfg["classes"], sc["grid_per_class"], out / "samples.png")

    # 3. Record and write the card.
    cfg["results"]["samples"] = {"eval_per_class": sc["eval_per_class"],
                                 "num_inference_steps": sc["num_inference_steps"],
                                 "by_guidance_scale": sweep}
    write_train_config(cfg, out)
    write_card(name, out)
    log(f"[{name}] sample accuracy by guidance scale: "
        + ", ".join(f"w={r['guidance_scale']:g}: {r['accuracy']:.3f}" for r in sweep))
    return cfg


def write_card(name: str, out: Path) -> None:
    """(Re)write MODEL_CARD.md from the folder's train_config.json and loss.csv."""
    import csv
    import json

    from .card import model_card

    cfg = json.loads((out / "train_config.json").read_text())
    with open(out / "loss.csv") as f:
        rows = [{k: float(v) for k, v in r.items()} for r in csv.DictReader(f)]
    for r in rows:
        r["step"] = int(r["step"])
    (out / "MODEL_CARD.md").write_text(model_card(name, cfg, rows))
