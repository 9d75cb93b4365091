"""Real model sizes on this machine: load time, plain forward, analyze's sampling and probed steps, peak RSS.

For random-weight models built from the real configs of google/ddpm-cifar10-32, facebook/DiT-XL-2-256,
Stable Diffusion 1.5's UNet and Stable Diffusion 3 medium's transformer, each model in its own child processes:

  build    the model from its config (random weights), saved with ``save_pretrained`` into a temporary folder
           (``unet/`` or ``transformer/`` and ``scheduler/``), and for the text-conditional ones a random
           ``--prompt-embeds`` safetensors (no text encoder needed);
  forward  the model loaded from the folder and called once at batch 1 under ``torch.no_grad`` the way diffcrit
           calls it (the reference: median of ``--forward-repeats`` after one warm-up call);
  analyze  ``diffcrit.analyze`` on the folder, 1 sample, ``--steps`` steps, probes minimal: ``probe_schedule=every,
           probe_every=1000`` (the first and last steps only), 2 shells, 1 direction per shell, no bootstrap.

Each phase's peak RSS is its own; the load averages before and after each phase are recorded with its figures.
Prints a Markdown table and writes every figure to ``--out`` (JSON).

    python bench/bench_sizes.py --out sizes.json                      # all four
    python bench/bench_sizes.py --models ddpm-cifar10-32,dit-xl-2-256  # some
    python bench/bench_sizes.py --sd3-pixels 256                       # SD3 below its 1024 px default
    python bench/bench_sizes.py --dry-run                              # parameter counts on the meta device
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from _common import analyze_timing, load_average, memory, run_phase  # also: OMP_WAIT_POLICY=PASSIVE
from bench_analyze import CIFAR_SCHEDULER, CIFAR_UNET, DIT_SCHEDULER, DIT_XL_2_256

HERE = Path(__file__).resolve()

# runwayml/stable-diffusion-v1-5: unet/config.json and its scheduler's noise schedule (DDIM here).
SD15_UNET = dict(sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
                 block_out_channels=(320, 640, 1280, 1280), cross_attention_dim=768, attention_head_dim=8,
                 down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D",
                                   "DownBlock2D"),
                 up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
                 act_fn="silu", center_input_sample=False, downsample_padding=1, flip_sin_to_cos=True, freq_shift=0,
                 mid_block_scale_factor=1, norm_eps=1e-5, norm_num_groups=32)
SD15_SCHEDULER = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                      clip_sample=False, set_alpha_to_one=False, steps_offset=1)
# stabilityai/stable-diffusion-3-medium-diffusers: transformer/config.json and scheduler/scheduler_config.json.
SD3_MEDIUM = dict(sample_size=128, patch_size=2, in_channels=16, num_layers=24, attention_head_dim=64,
                  num_attention_heads=24, joint_attention_dim=4096, caption_projection_dim=1536,
                  pooled_projection_dim=2048, out_channels=16, pos_embed_max_size=192)
SD3_SCHEDULER = dict(num_train_timesteps=1000, shift=3.0)


@dataclass(frozen=True)
class Spec:
    """One model: its diffusers class and config, the component folder it is saved in, its scheduler, the
    conditioning analyze is given (``embeds``: name -> shape of the random ``--prompt-embeds`` tensors)."""

    model_class: str
    config: dict
    component: str
    scheduler_class: str
    scheduler: dict
    class_label: int | None = None
    embeds: dict = field(default_factory=dict)
    pixels: bool = False  # a transformer pipeline: --height/--width apply (latent grid = pixels / 8)


MODELS = {
    "ddpm-cifar10-32": Spec("UNet2DModel", CIFAR_UNET, "unet", "DDPMScheduler", CIFAR_SCHEDULER),
    "dit-xl-2-256": Spec("DiTTransformer2DModel", DIT_XL_2_256, "transformer", "DDIMScheduler", DIT_SCHEDULER,
                         class_label=207),
    "sd15-unet": Spec("UNet2DConditionModel", SD15_UNET, "unet", "DDIMScheduler", SD15_SCHEDULER,
                      embeds={"prompt_embeds": (1, 77, 768)}),
    "sd3-medium": Spec("SD3Transformer2DModel", SD3_MEDIUM, "transformer", "FlowMatchEulerDiscreteScheduler",
                       SD3_SCHEDULER, embeds={"prompt_embeds": (1, 333, 4096), "pooled_prompt_embeds": (1, 2048)},
                       pixels=True),
}
# analyze with probes as cheap as they go: the first and last steps, shell 0 (every channel's DC mode) + 1 wave.
ANALYZE = dict(samples=1, probe_schedule="every", probe_every=1000, shells=2, directions=1, bootstrap=0,
               device="cpu")


def _model(spec: Spec):
    import diffusers

    return getattr(diffusers, spec.model_class)(**spec.config)


def parameter_counts(names=tuple(MODELS)) -> dict[str, int]:
    """Each model built on the meta device (no memory, no init): its parameter count."""
    import torch

    with torch.device("meta"):
        return {name: sum(p.numel() for p in _model(MODELS[name]).parameters()) for name in names}


# --- phases (each in its own process) ---------------------------------------------------------------------------

def phase_build(args) -> dict:
    """The model with random weights, its scheduler and random prompt embeddings, saved under ``args.folder``."""
    import diffusers
    import torch
    from safetensors.torch import save_file

    spec = MODELS[args.model]
    tick = time.perf_counter()
    torch.manual_seed(0)
    model = _model(spec).eval()
    parameters = sum(p.numel() for p in model.parameters())
    built = time.perf_counter()
    model.save_pretrained(args.folder / spec.component, max_shard_size="2GB")  # small shards: small save buffers
    getattr(diffusers, spec.scheduler_class)(**spec.scheduler).save_pretrained(args.folder / "scheduler")
    if spec.embeds:
        generator = torch.Generator().manual_seed(1)
        save_file({k: torch.randn(shape, generator=generator) for k, shape in spec.embeds.items()},
                  str(args.folder / "embeds.safetensors"))
    return {"parameters": parameters, "init_s": built - tick, "save_s": time.perf_counter() - built,
            **memory("cpu")}


def _pixels(args, spec: Spec) -> int | None:
    return args.sd3_pixels if spec.pixels else None


def phase_forward(args) -> dict:
    """One call at batch 1 under no_grad, as diffcrit calls the model (its family's call, its conditioning)."""
    import diffusers
    import torch
    from safetensors.torch import load_file

    from diffcrit.models.families import model_family

    spec = MODELS[args.model]
    model_class = getattr(diffusers, spec.model_class)
    tick = time.perf_counter()
    model = model_class.from_pretrained(args.folder, subfolder=spec.component).eval()
    load_s = time.perf_counter() - tick
    family = model_family(model)
    size = model.config.sample_size if not spec.pixels else _pixels(args, spec) // 8
    x = torch.randn(1, family.channels(model.config), size, size, generator=torch.Generator().manual_seed(0))
    timestep = torch.full((1,), 500.0)
    if spec.class_label is not None:
        cond = {"class_labels": torch.full((1,), spec.class_label, dtype=torch.long)}
    elif spec.embeds:
        embeds = load_file(str(args.folder / "embeds.safetensors"))
        cond = family.text.to_cond(model, embeds, (size * 8, size * 8), None)
    else:
        cond = None
    seconds = []
    with torch.no_grad():
        for _ in range(1 + args.forward_repeats):  # the first call warms up (allocations, kernel choice)
            tick = time.perf_counter()
            out = family.call(model, x, timestep, cond)
            seconds.append(time.perf_counter() - tick)
    return {"load_s": load_s, "forward_s": statistics.median(seconds[1:]), "forward_all_s": seconds,
            "latent": [int(x.shape[1]), size, size], "output": list(out.shape), **memory("cpu")}


def phase_analyze(args) -> dict:
    """``diffcrit.analyze`` on the folder: 1 sample, few steps, minimal probes (``ANALYZE``)."""
    import diffcrit

    spec = MODELS[args.model]
    options = dict(ANALYZE, steps=args.steps)
    if spec.class_label is not None:
        options["class_label"] = spec.class_label
    if spec.embeds:
        options["prompt_embeds"] = str(args.folder / "embeds.safetensors")
    if spec.pixels:
        options.update(height=args.sd3_pixels, width=args.sd3_pixels)
    tick = time.perf_counter()
    document = diffcrit.analyze(str(args.folder), **options).to_dict()
    total = time.perf_counter() - tick
    figures = analyze_timing(document)
    return {**figures, "total_s": total, "steps": args.steps, "shape": document["model"]["shape"],
            "directions": len(document["probe"]["directions"]), "options": options, **memory("cpu")}


PHASES = {"build": phase_build, "forward": phase_forward, "analyze": phase_analyze}


# --- the run ----------------------------------------------------------------------------------------------------

def measure(args, name: str, root: Path) -> dict:
    """build, forward, analyze for one model, each in a child; the folder is removed afterwards (GBs)."""
    folder = root / name
    common = ["--model", name, "--folder", str(folder), "--steps", str(args.steps), "--threads", str(args.threads),
              "--sd3-pixels", str(args.sd3_pixels), "--forward-repeats", str(args.forward_repeats)]
    record = {"model": name, "class": MODELS[name].model_class}
    try:
        for phase in ("build", *args.phases.split(",")):
            print(f"{name}: {phase} ... (load average {load_average()})", file=sys.stderr, flush=True)
            record[phase] = run_phase(HERE, ["--phase", phase, *common], timeout=args.limit_s)
            if "error" in record[phase]:
                print(f"{name}: {phase} failed: {record[phase]['error']}", file=sys.stderr)
                break
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return record


def derived(record: dict) -> dict:
    """Per-step times and their ratios to the plain forward."""
    forward, analyze = record.get("forward", {}), record.get("analyze", {})
    out = {}
    if "forward_s" in forward and "sampling_s" in analyze:
        step = analyze["sampling_s"] / analyze["steps"]
        probed = analyze["probing_s"] / max(analyze["probed_steps"], 1)
        out = {"sampling_step_s": step, "step_over_forward": step / forward["forward_s"], "probed_step_s": probed,
               "probed_over_forward": probed / forward["forward_s"], "fd_rows": 2 * analyze["directions"]}
    return out


def _fmt(value, spec: str, unit: str = "") -> str:
    return "—" if value is None else f"{value:{spec}}{unit}"


def table(records: list[dict]) -> str:
    head = ("| model | params | latent | load (analyze) | forward, batch 1 | sampling step | step / forward | "
            "probed step (FD rows) | probed / forward | peak RSS forward / analyze | load avg before → after |")
    lines = [head, "|" + "---|" * head.count(" | ") + "---|"]
    for r in records:
        b, f, a, d = (r.get(k, {}) for k in ("build", "forward", "analyze", "derived"))
        failed = next((f"{phase}: {r[phase]['error']}" for phase in ("build", "forward", "analyze")
                       if "error" in r.get(phase, {})), None)
        latent = "×".join(str(n) for n in f.get("latent", a.get("shape", [])))
        rss = f"{_fmt(f.get('peak_rss_mb'), '.0f')} / {_fmt(a.get('peak_rss_mb'), '.0f')} MB"
        loads = f"{a.get('loadavg_before', f.get('loadavg_before', ['—']))[0]} → " \
                f"{a.get('loadavg_after', f.get('loadavg_after', ['—']))[0]}"
        probed = "—" if not d else f"{d['probed_step_s']:.2f} s ({d['fd_rows']})"
        lines.append(" | ".join([
            f"| {r['model']}", _fmt(b["parameters"] / 1e6 if "parameters" in b else None, ".1f", " M"), latent or "—",
            _fmt(a.get("load_s"), ".1f", " s"), _fmt(f.get("forward_s"), ".3f", " s"),
            _fmt(d.get("sampling_step_s"), ".3f", " s"), _fmt(d.get("step_over_forward"), ".2f"), probed,
            _fmt(d.get("probed_over_forward"), ".1f"), rss, loads]) + " |")
        if failed or "analyze" not in r:
            lines[-1] += f" {failed or 'analyze not run'}"
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, of: {', '.join(MODELS)}")
    parser.add_argument("--steps", type=int, default=3, help="analyze's sampling steps (first and last probed)")
    parser.add_argument("--sd3-pixels", type=int, default=1024,
                        help="SD3's --height/--width (its default 1024 px = 128x128 latents; 16 px per token)")
    parser.add_argument("--forward-repeats", type=int, default=2, help="timed forwards after the warm-up one")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--limit-s", type=float, default=1800, help="a phase running longer is stopped and reported")
    parser.add_argument("--phases", default="forward,analyze", help="after build: forward, analyze or both")
    parser.add_argument("--out", type=Path, help="write all figures as JSON")
    parser.add_argument("--dry-run", action="store_true", help="build each config on the meta device: parameters")
    parser.add_argument("--table", type=Path, nargs="+", metavar="JSON",
                        help="print the table of earlier --out files (their models in order) and exit")
    # child-process arguments
    parser.add_argument("--phase", choices=list(PHASES), help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    names = [n for n in args.models.split(",") if n]
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        parser.error(f"unknown model {unknown[0]!r}; known: {', '.join(MODELS)}")

    if args.table:
        print(table([record for path in args.table for record in json.loads(path.read_text())["models"]]))
        return
    import torch

    torch.set_num_threads(args.threads)
    if args.dry_run:
        counts = parameter_counts(names)
        for name, count in counts.items():
            print(f"{name:18s} {MODELS[name].model_class:24s} {count:>14,d} parameters")
        print(json.dumps(counts))
        return
    if args.phase:
        import diffusers

        import diffcrit.models.loading  # noqa: F401  (imports are not part of any phase's timing)

        for name in (MODELS[args.model].model_class, MODELS[args.model].scheduler_class):
            getattr(diffusers, name)  # resolve diffusers' lazy modules
        print(json.dumps(PHASES[args.phase](args)))
        return
    root = Path(tempfile.mkdtemp(prefix="diffcrit-sizes-"))
    records = []
    try:
        for name in names:
            record = measure(args, name, root)
            record["derived"] = derived(record)
            records.append(record)
            if args.out:  # after each model: a later one running out of memory or time keeps these
                args.out.write_text(json.dumps(_report(args, records), indent=1))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(table(records))


def _report(args, records: list[dict]) -> dict:
    import platform

    import torch

    return {"steps": args.steps, "threads": args.threads, "sd3_pixels": args.sd3_pixels,
            "analyze_options": ANALYZE, "torch": torch.__version__,
            "machine": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(), "models": records}


if __name__ == "__main__":
    main()
