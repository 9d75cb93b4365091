"""What is written next to a built-in checkpoint: loss.csv, samples.png, MODEL_CARD.md.

Pure formatting: dicts and tensors in, text or image files out; no training here.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import torch

CRITICAL_PLACEHOLDER = "Critical time: to be measured"
CONSISTENCY_PLACEHOLDER = "Consistency of D(y): to be measured"

# Notation of docs/design.md §2: ab = alphas_cumprod[timestep], y = x_t / sqrt(ab), sigma^2 = (1-ab)/ab.
_PREDICTION_MEANING = {
    "epsilon": "the noise eps, so D(y) = (x_t - sqrt(1-ab) eps_hat) / sqrt(ab) = y - sigma eps_hat.",
    "v_prediction": "the velocity v = sqrt(ab) eps - sqrt(1-ab) x0 (Salimans & Ho 2022,\n"
                    "arXiv:2202.00512), so D(y) = sqrt(ab) x_t - sqrt(1-ab) v_hat.",
}
_TARGET_NAME = {"epsilon": "noise eps (eps-prediction)",
                "v_prediction": "velocity v = sqrt(ab) eps - sqrt(1-ab) x0 (v-prediction)"}


def write_loss_csv(rows: list[dict[str, float]], path: Path) -> None:
    """One line per logging window: step, loss (window mean), lr, elapsed_s."""
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["step", "loss", "lr", "elapsed_s"])
        writer.writeheader()
        for row in rows:
            writer.writerow({"step": row["step"], "loss": f"{row['loss']:.6f}",
                             "lr": f"{row['lr']:.6g}", "elapsed_s": f"{row['elapsed_s']:.1f}"})


def sample_grid_png(samples: torch.Tensor, classes: list[str], per_class: int, path: Path,
                    cell: int = 64) -> None:
    """Save samples (n_classes*per_class, 1, H, W) in [-1, 1] as a grid, one row per class,
    class name in a left margin; pixels upscaled (nearest) to ``cell`` px."""
    from PIL import Image, ImageDraw

    from ..report.grids import image_grid, tiles

    margin, gap = 64, 2
    grid = image_grid(tiles(samples[:, :1], cell), per_class, border=(0, 0, gap, gap))
    canvas = Image.new("L", (margin + grid.width, grid.height), 255)
    canvas.paste(grid, (margin, 0))
    draw = ImageDraw.Draw(canvas)
    for r, name in enumerate(classes):
        draw.text((4, r * (cell + gap) + cell // 2 - 6), name, fill=0)
    canvas.save(path)


def _loss_table(rows: list[dict[str, float]], n_lines: int = 11) -> str:
    """Markdown table of the loss log at ~n_lines evenly spaced windows (first and last kept)."""
    picks = sorted({round(i * (len(rows) - 1) / (n_lines - 1)) for i in range(n_lines)})
    lines = ["| step | train loss (window mean) | lr | elapsed (s) |", "|---:|---:|---:|---:|"]
    lines += [f"| {rows[i]['step']} | {rows[i]['loss']:.4f} | {rows[i]['lr']:.2e} | "
              f"{rows[i]['elapsed_s']:.0f} |" for i in picks]
    return "\n".join(lines)


def _accuracy_table(classes: list[str], cols: dict[str, list[float]]) -> str:
    """Markdown table: one row per class, one column per named accuracy list."""
    head = "| class | " + " | ".join(cols) + " |"
    rule = "|---|" + "---:|" * len(cols)
    body = [f"| {name} | " + " | ".join(f"{v[k]:.2f}" for v in cols.values()) + " |"
            for k, name in enumerate(classes)]
    return "\n".join([head, rule, *body])


def model_card(name: str, cfg: dict[str, Any], rows: list[dict[str, float]]) -> str:
    """MODEL_CARD.md text from the written train_config.json (``cfg``) and the loss log."""
    sections = [_header(name, cfg), _data_and_model(cfg), _training(cfg, rows),
                _classifier(cfg), _samples(cfg), _consistency(name, cfg), _critical(name, cfg),
                _reproduce_and_limits(name, cfg)]
    return "\n\n".join(sections) + "\n"


def _consistency(name: str, cfg: dict[str, Any]) -> str:
    """Decided-fraction check (train_config.json["decided_fraction"], from `consistency`)."""
    block = cfg.get("decided_fraction")
    if not block:
        return (f"## {CONSISTENCY_PLACEHOLDER}\n\n"
                f"Run `python -m diffcrit.training consistency {name}` to fill this in.")
    shells = len(block["max"])
    head = ("| prediction | steps | seed | "
            + " | ".join(f"max shell {n}" for n in range(shells))
            + " | first step: sigma | first step: f_0 ... f_" + f"{shells - 1} |")
    lines = [head, "|---|---:|---:|" + "---:|" * shells + "---:|---|"]
    for checked in ([block["baseline"]] if "baseline" in block else []) + [block]:
        for run in checked["runs"]:
            lines.append(f"| {checked['prediction_type']} | {run['steps']} | {run['seed']} | "
                         + " | ".join(f"{v:.2f}" for v in run["max"])
                         + f" | {run['first_sigma']:.1f} | "
                         + " ".join(f"{v:.3f}" for v in run["first_step"]) + " |")
    verdict = "within" if max(block["max"]) <= block["limit"] else "ABOVE"
    why = "" if block["prediction_type"] == "epsilon" else (
        "\n\nWhy not eps: an eps-prediction network's error reaches D(y) = y - sigma eps_hat\n"
        "multiplied by sigma (16, 34, 71 at the first of 25, 50, 100 steps), so D(y) varied far\n"
        "more across samples than the samples do; with v the error reaches D(y) multiplied by\n"
        "sqrt(1 - ab) <= 1.")
    return f"""## Consistency of D(y) at high noise

The decided fraction of shell n at step j, f_n(j) = S_D,n(j) / S_x0,n (docs/design.md §5: connected
structure factor over samples of the denoised estimate D(y) at step j, over that of the final
samples, averaged over the shell's FFT bins), is at most 1 for a consistent denoiser (law of total
variance) and 1 at the last step. Table: max over all steps of f_n, and f_n at the first
(noisiest) step; {block['runs'][0]['samples']} samples per run ({block['conditioning']}; DDPM
sampling as `diffcrit analyze` does; seeds 0 and 64 draw disjoint samples), from
`{block['command']}`.

{chr(10).join(lines)}

This model predicts `{block['prediction_type']}`; the largest value over shells 0-{shells - 1}
is **{max(block['max']):.2f}**, {verdict} the accepted {block['limit']:g}.{why}"""


def _critical(name: str, cfg: dict[str, Any]) -> str:
    """The critical time diffcrit measures (train_config.json["critical_time"], from `measure`)."""
    results = cfg.get("critical_time")
    if not results:
        return (f"## {CRITICAL_PLACEHOLDER}\n\nRun `python -m diffcrit.training measure {name}` to fill this in.")
    fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    names = ("decision", "instability_onset", "stiffness_zero", "stiffness_min", "xi_eq_peak", "xi_growth")
    lines = [f"## Critical time measured by diffcrit {results['diffcrit_version']}", "",
             f"`{results['command']}` with the analyze defaults (conditioning: {results['conditioning']}), on disjoint "
             "sample ranges; t_c is the primary marker (docs/design.md §6), ci95 by bootstrap over samples and "
             "probe points; every marker's t beside it.", "",
             "| samples | primary | t_c | sigma | ci95 | " + " | ".join(names) + " | probe |",
             "|---|---|---|---|---|" + "---|" * len(names) + "---|"]
    for run in results["runs"]:
        ci = "-" if not run["ci95"] else f"[{run['ci95'][0]:.3f}, {run['ci95'][1]:.3f}]"
        m = run["markers"]
        first, count = run["seed"], run.get("samples")
        span = f"{first}..{first + count - 1}" if count else f"seed {first}"
        lines.append(f"| {span} | {run.get('primary', '-')} | {fmt(run['t'])} | {fmt(run['sigma'])} | {ci} | "
                     + " | ".join(fmt(m.get(k)) for k in names) + f" | {run['probe_method']} |")
    return "\n".join(lines)


def _header(name: str, cfg: dict[str, Any]) -> str:
    return f"""# builtin:{name}

{cfg['summary']}

A diffusers `DDPMPipeline` folder (`model_index.json`, `unet/`, `scheduler/`, safetensors),
trained by `python -m diffcrit.training train {name}` (seeded; see Reproduce). Load it with
`--model builtin:{name}` or as any local pipeline folder:

```python
from diffusers import UNet2DModel, DDPMScheduler
unet = UNet2DModel.from_pretrained(folder, subfolder="unet")
scheduler = DDPMScheduler.from_pretrained(folder, subfolder="scheduler")
out = unet(x_t, timestep, class_labels=labels).sample  # class ids; null = {cfg['null_class']}
```

The output is the scheduler's prediction_type, `{cfg['scheduler']['prediction_type']}`:
{_PREDICTION_MEANING[cfg['scheduler']['prediction_type']]}"""


def _data_and_model(cfg: dict[str, Any]) -> str:
    res, unet, sch = cfg["results"], cfg["unet"], cfg["scheduler"]
    classes = ", ".join(f"{k} = {c}" for k, c in enumerate(cfg["classes"]))
    return f"""## Data

{cfg['data']['source']}. Classes: {classes}; null class (classifier-free guidance) =
{cfg['null_class']}. {res['n_train_images']} training images of shape {cfg['shape']} (C, H, W),
values in [-1, 1].

## Model

`UNet2DModel`, {res['n_parameters']:,} parameters ({res['unet_bytes'] / 1e6:.2f} MB fp32
safetensors): block_out_channels {unet['block_out_channels']}, layers_per_block
{unet['layers_per_block']}, down {unet['down_block_types']}, up {unet['up_block_types']}
(self-attention at the lowest resolution, head dim {unet['attention_head_dim']}), GroupNorm
groups {unet['norm_num_groups']}, `num_class_embeds` {unet['num_class_embeds']}
(= {len(cfg['classes'])} classes + null). Scheduler: `DDPMScheduler`,
{sch['num_train_timesteps']} steps, `{sch['beta_schedule']}` betas, prediction_type
`{sch['prediction_type']}`, clip_sample {sch['clip_sample']}."""


def _training(cfg: dict[str, Any], rows: list[dict[str, float]]) -> str:
    res, tc, env = cfg["results"], cfg["train"], cfg["results"]["environment"]
    target = _TARGET_NAME[cfg["scheduler"]["prediction_type"]]
    return f"""## Training

MSE to the {target}, timesteps uniform in [0, 1000), label dropout to the null class with
p = {tc['label_dropout']}. AdamW lr {tc['lr']:g} (linear warm-up {tc['warmup']} steps, cosine to
{tc['min_lr_ratio']:g}x), batch {tc['batch']}, {tc['steps']} steps, grad-norm clip
{tc['grad_clip']}, EMA decay {tc['ema_decay']} (the shipped weights are the EMA), seed
{tc['seed']}.

- Wall time: **{res['wall_time_s'] / 60:.1f} min** (process CPU time
  {res['cpu_time_s'] / 60:.1f} min) with {env['torch_threads']} torch thread(s) on a 2-core
  machine shared with other jobs ({env['machine']}, torch {env['torch']}).
- Final training loss (mean of the last {res['final_loss_window']} steps):
  **{res['final_loss']:.4f}**.
- Loss of the shipped EMA weights on a fixed set (512 training images x 20 evenly spaced
  timesteps 0..999, fixed noise, same target): **{res['eval_loss_ema']:.4f}**. Not the train
  loss's twin: the grid gives timestep 0, where the target (there ~ eps) is barely identifiable,
  a weight of 1/20 instead of 1/1000.

Loss curve (full log in `loss.csv`):

{_loss_table(rows)}"""


def _classifier(cfg: dict[str, Any]) -> str:
    clf = cfg["results"]["classifier"]
    return f"""## Classifier (`classifier/`)

`diffcrit.guidance.classifiers.SmallCNN` {cfg['classifier']['arch']['channels']}, loaded with
`diffcrit.guidance.classifiers.load_classifier(folder)`; logits over the {len(cfg['classes'])} real
classes for clean images in [-1, 1]. Split: {clf['split_description']}.
Held-out accuracy **{clf['heldout_accuracy']:.3f}** on {clf['heldout_size']} images
(train accuracy {clf['train_accuracy']:.3f}; {clf['wall_time_s']:.0f} s to train)."""


def _samples(cfg: dict[str, Any]) -> str:
    smp, sc = cfg["results"]["samples"], cfg["samples"]
    by_w = {r["guidance_scale"]: r for r in smp["by_guidance_scale"]}
    cols = {f"w = {w:g}": r["accuracy_per_class"] for w, r in by_w.items()}
    cols["classifier held-out"] = cfg["results"]["classifier"]["heldout_accuracy_per_class"]
    means = ", ".join(f"w = {w:g}: **{r['accuracy']:.3f}**" for w, r in by_w.items())
    return f"""## Samples

`samples.png`: CFG samples at guidance scale w = {sc['guidance_scale']:g}
(out = out(null) + w (out(class) - out(null)) on the network output; w = 1 is plain
conditional sampling),
{sc['num_inference_steps']} DDIM steps (eta 0, trailing spacing), one row per class; sample i
draws its noise from a generator seeded {sc['seed']} + i.

Class accuracy of generated samples as judged by the shipped classifier
({smp['eval_per_class']} samples per class, {smp['num_inference_steps']} DDIM steps), mean over
classes (chance {1.0 / len(cfg['classes']):.3f}): {means}.

{_accuracy_table(cfg['classes'], cols)}

{_guidance_note(by_w)}""".rstrip()


def _guidance_note(by_w: dict[float, dict]) -> str:
    """A sentence when the strongest guidance scale scores clearly below the best one."""
    best, w_max = max(by_w, key=lambda w: by_w[w]["accuracy"]), max(by_w)
    if by_w[best]["accuracy"] - by_w[w_max]["accuracy"] < 0.05:
        return ""
    return (f"Strong guidance hurts this small model: accuracy falls from "
            f"{by_w[best]['accuracy']:.3f} at w = {best:g} to {by_w[w_max]['accuracy']:.3f} at "
            f"w = {w_max:g}; use w <= {best:g} for class-faithful samples.")


def _reproduce_and_limits(name: str, cfg: dict[str, Any]) -> str:
    return f"""## Reproduce

```
python -m diffcrit.training train {name}      # trains and writes this folder (seeded)
python -m diffcrit.training evaluate {name}   # only redo samples, sample accuracy, this card
```

All figures above come from `train_config.json` (the exact recipe plus results). Bitwise equal
weights need the same torch version and thread count ({cfg['train']['threads']}); otherwise
expect figures within noise.

## Limitations

Tiny model, short CPU training: samples are recognisable but not perfect. It exists to give
diffcrit a real trained network (attention included) to measure in seconds, offline."""
