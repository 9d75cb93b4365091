"""Cost of ``diffcrit analyze`` against plain sampling and a naive probe loop, in one run.

Same model, steps and samples for the three:
  (a) the plain diffusers pipeline (DDPMPipeline / DiTPipeline), per-sample generators;
  (b) ``diffcrit.analyze`` with its default options (or the ones given with --option);
  (c) a naive loop: the pipeline's own denoising loop, plus, at the steps and probe points (b)
      probed, one ``torch.func.jvp`` per plane-wave direction (same directions; same stiffness,
      checked against (b)). ``--naive-dense`` also times it probing every step.

Each phase runs in a fresh child process (so its peak memory is its own), the phases alternate
over ``--repeats`` rounds on the same model folder, and the medians are reported.

    python bench/bench_analyze.py                       # CPU: narrow ddpm-cifar10-32-like UNet
    python bench/bench_analyze.py --cuda                # GPU: ddpm-cifar10-32 and DiT-XL-2-256 configs, fp32 + bf16
    python bench/bench_analyze.py --option probe_schedule=every --option probe_samples=2
    python bench/bench_analyze.py --width 128 --samples 16 128 --repeats 2 --no-naive   # the real config, two sizes
    python bench/bench_analyze.py --width 128 --samples 128 --rows       # seconds per sampling / probe row only

Models are built in code with random weights (no download): timings do not depend on weights.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _common import analyze_timing, memory, run_phase, sync  # also: OMP_WAIT_POLICY=PASSIVE before torch loads

HERE = Path(__file__).resolve()

# google/ddpm-cifar10-32's UNet config; the CPU bench narrows the channels (WIDTH) to fit minutes.
CIFAR_UNET = dict(sample_size=32, in_channels=3, out_channels=3, layers_per_block=2,
                  block_out_channels=(128, 256, 256, 256), norm_num_groups=32, norm_eps=1e-6, attention_head_dim=None,
                  down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"),
                  up_block_types=("UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
                  downsample_padding=0, flip_sin_to_cos=False, freq_shift=1, mid_block_scale_factor=1)
CIFAR_SCHEDULER = dict(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear",
                       clip_sample=True)
# facebook/DiT-XL-2-256's transformer config (latents 4 x 32 x 32, learned sigma) and its DDIM scheduler.
DIT_XL_2_256 = dict(num_attention_heads=16, attention_head_dim=72, in_channels=4, out_channels=8, num_layers=28,
                    sample_size=32, patch_size=2, num_embeds_ada_norm=1000, norm_type="ada_norm_zero")
DIT_SCHEDULER = dict(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear",
                     clip_sample=False)


# --- model folders ---------------------------------------------------------------------------------

def build_folder(kind: str, folder: Path, width: int) -> Path:
    """A pipeline folder with random weights: ``cifar`` (channels scaled to ``width``) or ``dit``."""
    import torch
    from diffusers import (AutoencoderKL, DDIMScheduler, DDPMPipeline, DDPMScheduler, DiTPipeline,
                           DiTTransformer2DModel, UNet2DModel)

    torch.manual_seed(0)
    if kind == "cifar":
        scale = width / CIFAR_UNET["block_out_channels"][0]
        channels = tuple(int(c * scale) for c in CIFAR_UNET["block_out_channels"])
        groups = min(CIFAR_UNET["norm_num_groups"], channels[0])
        unet = UNet2DModel(**{**CIFAR_UNET, "block_out_channels": channels, "norm_num_groups": groups})
        DDPMPipeline(unet=unet, scheduler=DDPMScheduler(**CIFAR_SCHEDULER)).save_pretrained(folder)
    else:
        vae = AutoencoderKL(latent_channels=4, block_out_channels=(8,), norm_num_groups=4)  # never decodes here
        DiTPipeline(transformer=DiTTransformer2DModel(**DIT_XL_2_256), vae=vae,
                    scheduler=DDIMScheduler(**DIT_SCHEDULER)).save_pretrained(folder)
    return folder


# --- the three phases (each in its own process) ------------------------------------------------------

def _generators(n: int, seed: int = 0):
    import torch

    return [torch.Generator("cpu").manual_seed(seed + i) for i in range(n)]


def phase_pipeline(args) -> dict:
    """(a) The model's own diffusers pipeline, as a user would call it."""
    import torch
    from diffusers import DDPMPipeline, DiTPipeline

    tick = time.perf_counter()
    dtype = getattr(torch, args.dtype)
    if args.kind == "dit":
        pipe = DiTPipeline.from_pretrained(args.folder, torch_dtype=dtype).to(args.device)
        pipe.vae.decode = lambda z, *a, **k: type("Out", (), {"sample": z})()  # latents out: no VAE work
        call = dict(class_labels=[207] * args.samples, guidance_scale=1.0, output_type="np")
    else:
        pipe = DDPMPipeline.from_pretrained(args.folder, torch_dtype=dtype).to(args.device)
        call = dict(batch_size=args.samples, output_type="np")
    pipe.set_progress_bar_config(disable=True)
    sync(args.device)
    loaded = time.perf_counter()
    pipe(generator=_generators(args.samples), num_inference_steps=args.steps, **call)
    sync(args.device)
    done = time.perf_counter()
    return {"load_s": loaded - tick, "run_s": done - loaded, **memory(args.device)}


def phase_analyze(args) -> dict:
    """(b) ``diffcrit.analyze`` with the default options (plus --option overrides)."""
    import diffcrit

    options = dict(steps=args.steps, samples=args.samples, device=args.device, dtype=args.dtype, **args.options)
    if args.kind == "dit":
        options["class_label"] = 207
    tick = time.perf_counter()
    document = diffcrit.analyze(str(args.folder), **options).to_dict()
    sync(args.device)
    total = time.perf_counter() - tick
    if args.result:
        Path(args.result).write_text(json.dumps(document))
    figures = analyze_timing(document)
    return {**figures, "run_s": total - figures["load_s"], **memory(args.device)}


def phase_naive(args) -> dict:
    """(c) The pipeline's denoising loop plus one ``torch.func.jvp`` per direction at (b)'s probe points."""
    import numpy as np
    import torch
    from diffusers import DDIMScheduler, DDPMScheduler, DiTTransformer2DModel, UNet2DModel
    from torch.func import jvp

    from diffcrit.spectral.fourier import plane_wave_directions
    from diffcrit.probing.probes import forward_ad_safe
    from diffcrit.report.document import read_document

    reference = read_document(args.result, role="(b)'s result")
    config, probe = reference["config"], reference["probe"]
    probed = [s["index"] for s in reference["steps"] if s["probed"]] if not args.dense else list(range(args.steps))
    tick = time.perf_counter()
    dtype = getattr(torch, args.dtype)
    if args.kind == "dit":
        model = DiTTransformer2DModel.from_pretrained(args.folder, subfolder="transformer", torch_dtype=dtype)
        scheduler = DDIMScheduler.from_pretrained(args.folder, subfolder="scheduler")
        labels = lambda n: {"class_labels": torch.full((n,), 207, device=args.device)}  # noqa: E731
    else:
        model = UNet2DModel.from_pretrained(args.folder, subfolder="unet", torch_dtype=dtype)
        scheduler = DDPMScheduler.from_pretrained(args.folder, subfolder="scheduler")
        labels = lambda n: {}  # noqa: E731
    model = model.to(args.device).eval().requires_grad_(False)
    probe_model = model if dtype == torch.float32 else copy.deepcopy(model).float()  # JVP in float32
    channels = model.config.in_channels
    shape = (channels, model.config.sample_size, model.config.sample_size)
    directions = plane_wave_directions(shape, config["shells"], config["directions"]).vectors.to(args.device)
    points = 1 if config["linearize_at"] == "zero" else config["probe_samples"]
    sync(args.device)
    loaded = time.perf_counter()

    def eps_of(net, x, t):
        return net(x, t.expand(x.shape[0]), **labels(x.shape[0])).sample[:, :channels].float()

    scheduler.set_timesteps(args.steps)
    alphas = scheduler.alphas_cumprod
    generators = _generators(args.samples)
    x = torch.cat([torch.randn((1, *shape), generator=g) for g in generators]).to(args.device, dtype)
    gains = {}
    for i, t in enumerate(scheduler.timesteps):
        t_dev = torch.as_tensor(t, device=args.device)
        with torch.no_grad():
            eps = eps_of(model, x, t_dev)
        if i in probed:
            sigma = float(((1 - alphas[int(t)]) / alphas[int(t)]).sqrt())
            scale = (1 + sigma**2) ** 0.5
            y = x.float() * scale if config["linearize_at"] != "zero" else torch.zeros_like(x, dtype=torch.float32)

            # D(y) = y - sigma eps(x_t = y / sqrt(1 + sigma^2)), docs/design.md §2
            def denoise(z, sigma=sigma, scale=scale, t_dev=t_dev):
                return z - sigma * eps_of(probe_model, z / scale, t_dev)

            step = []
            with forward_ad_safe(probe_model):
                for p in range(points):
                    for v in directions:
                        _, column = jvp(denoise, (y[p : p + 1],), (v[None],))
                        step.append(float((v.double() * column[0].double()).sum()))
            gains[i] = np.array(step).reshape(points, -1)
        x = scheduler.step(eps.to(x.dtype), t, x, generator=generators).prev_sample
    sync(args.device)
    done = time.perf_counter()
    # Same stiffness as (b): compare the gains where both probed.
    shell = np.array([d["shell"] for d in probe["directions"]])
    worst = 0.0
    for entry in reference["steps"]:
        if entry["probed"] and entry["index"] in gains:
            mine = [1 - gains[entry["index"]][:, shell == n].mean() for n in range(config["shells"])]
            worst = max(worst, float(np.max(np.abs(np.array(mine) - np.array(entry["stiffness"])))))
    return {"load_s": loaded - tick, "run_s": done - loaded, "probed_steps": len(gains),
            "max_stiffness_diff_vs_b": worst, **memory(args.device)}


def phase_rows(args) -> dict:
    """(r) Seconds per model row of the UNet alone, alternated: a sampling forward (analyze's batch size) and a
    probe forward (the rows one probed step sends at the defaults: samples / 8 points x 4 shells x 2). With the
    forwards analyze counts (probe.budget) this gives probing's share where a whole run does not fit the machine."""
    import torch
    from diffusers import UNet2DModel

    model = UNet2DModel.from_pretrained(args.folder, subfolder="unet").eval().requires_grad_(False).to(args.device)
    shape = (model.config.in_channels, model.config.sample_size, model.config.sample_size)
    sizes = {"sampling": min(64, args.samples), "probing": max(2, args.samples // 8) * 4 * 2}
    times: dict[str, list[float]] = {name: [] for name in sizes}
    with torch.no_grad():
        for _ in range(args.row_repeats):
            for name, batch in sizes.items():
                x = torch.randn(batch, *shape, device=args.device)
                sync(args.device)
                tick = time.perf_counter()
                model(x, torch.full((batch,), 500, device=args.device))
                sync(args.device)
                times[name].append((time.perf_counter() - tick) / batch)
    per_row = {name: statistics.median(values) for name, values in times.items()}
    return {"batch": sizes, "s_per_row": per_row, "probe_over_sampling_row": per_row["probing"] / per_row["sampling"],
            "all_s_per_row": times, "load_s": 0.0, "run_s": sum(map(sum, times.values()))}


PHASES = {"a": phase_pipeline, "b": phase_analyze, "c": phase_naive, "r": phase_rows}


def run_child(args, phase: str, extra: list[str]) -> dict:
    command = ["--phase", phase, "--folder", str(args.folder), "--kind", args.kind,
               "--steps", str(args.steps), "--samples", str(args.samples), "--device", args.device,
               "--dtype", args.dtype, "--threads", str(args.threads), *extra]
    for option in args.option:
        command += ["--option", option]
    return run_phase(HERE, command)


def bench(args) -> dict:
    """Alternate a, b, c over the repeats; medians and ratios."""
    runs: dict[str, list[dict]] = {"a": [], "b": []} if args.no_naive else {"a": [], "b": [], "c": []}
    if args.naive_dense:
        runs["c_dense"] = []
    result = Path(tempfile.mkdtemp(prefix="diffcrit-bench-")) / "b.json"
    for round_ in range(args.repeats):
        runs["a"].append(run_child(args, "a", []))
        runs["b"].append(run_child(args, "b", ["--result", str(result)]))
        if not args.no_naive:
            runs["c"].append(run_child(args, "c", ["--result", str(result)]))
        if args.naive_dense and round_ == 0:  # minutes: once
            runs["c_dense"].append(run_child(args, "c", ["--result", str(result), "--dense"]))
    median = {phase: {k: statistics.median(r[k] for r in rows) if isinstance(rows[0][k], (int, float)) else rows[0][k]
                      for k in rows[0]} for phase, rows in runs.items()}
    ratios = {"b/a": median["b"]["run_s"] / median["a"]["run_s"],
              "b/a incl. load": (median["b"]["run_s"] + median["b"]["load_s"])
                                / (median["a"]["run_s"] + median["a"]["load_s"])}
    if "c" in median:
        ratios["c/b"] = median["c"]["run_s"] / median["b"]["run_s"]
    if args.naive_dense:
        ratios["c_dense/b"] = median["c_dense"]["run_s"] / median["b"]["run_s"]
    b = median["b"]
    ratios["probing share of b"] = b["probing_s"] / b["run_s"]
    if b.get("probing_forwards") is not None:
        ratios["probing / sampling forwards"] = b["probing_forwards"] / b["sampling_forwards"]
    return {"model": args.kind, "width": args.width if args.kind == "cifar" else None, "steps": args.steps,
            "samples": args.samples, "device": args.device, "dtype": args.dtype, "threads": args.threads,
            "options": dict(args.options), "repeats": args.repeats, "median": median, "ratios": ratios,
            "all": runs}


def print_report(report: dict) -> None:
    m = report["median"]
    print(f"\n{report['model']} (width {report['width']}), {report['steps']} steps, {report['samples']} samples, "
          f"{report['device']} {report['dtype']}, {report['threads']} threads, "
          f"options {report['options'] or 'defaults'}, "
          f"median of {report['repeats']}", file=sys.stderr)
    for phase, label in (("a", "pipeline"), ("b", "analyze"), ("c", "naive jvp"), ("c_dense", "naive jvp, every step")):
        if phase in m:
            row = m[phase]
            extra = f"  probed {row['probed_steps']} steps" if "probed_steps" in row else ""
            if phase == "b":
                extra += (f" ({row['probe_method']}, {row['shell_gain']}, {row['probe_points']} points; sampling "
                          f"{row['sampling_s']:.2f} s, probing {row['probing_s']:.2f} s, null {row['null_s']:.2f} s; "
                          f"forwards probing {row['probing_forwards']} / sampling {row['sampling_forwards']})")
            memory = f"  peak RSS {row['peak_rss_mb']:.0f} MB" + (
                f", CUDA {row['peak_cuda_mb']:.0f} MB" if "peak_cuda_mb" in row else "")
            print(f"  ({phase}) {label:22s} {row['run_s']:7.2f} s (+ load {row['load_s']:.2f} s){memory}{extra}",
                  file=sys.stderr)
    print("  " + "   ".join(f"{k} = {v:.2f}" for k, v in report["ratios"].items()), file=sys.stderr)
    if "c" in m:
        print(f"  naive vs analyze stiffness: max |diff| = {m['c']['max_stiffness_diff_vs_b']:.2e}", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--samples", type=int, nargs="+", default=[16],
                        help="sample counts, each benched in turn (e.g. 16 128); a child phase takes one.")
    parser.add_argument("--width", type=int, default=32, help="CPU model: base channels (ddpm-cifar10-32 has 128).")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--option", action="append", default=[], help="analyze option for (b), key=value (repeatable).")
    parser.add_argument("--no-naive", action="store_true",
                        help="skip (c), the naive probe loop (minutes at full width).")
    parser.add_argument("--naive-dense", action="store_true",
                        help="also time (c) probing every step (first round only).")
    parser.add_argument("--cuda", action="store_true",
                        help="GPU: ddpm-cifar10-32 and DiT-XL-2-256 configs, fp32 and bf16.")
    parser.add_argument("--rows", action="store_true",
                        help="only (r): seconds per row of a sampling and a probe forward, alternated.")
    parser.add_argument("--row-repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, help="write all figures as JSON.")
    # child-process arguments
    parser.add_argument("--phase", choices=list(PHASES), help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--kind", default="cifar", help=argparse.SUPPRESS)
    parser.add_argument("--device", default="cpu", help=argparse.SUPPRESS)
    parser.add_argument("--dtype", default="float32", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    parser.add_argument("--dense", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.options = dict(_option(o) for o in args.option)
    sample_counts, args.samples = args.samples, args.samples[0]

    import diffusers  # noqa: F401  (import cost is not part of any phase's timing)
    import torch

    torch.set_num_threads(args.threads)
    if args.phase:
        from diffusers import DDPMPipeline, DiTPipeline  # noqa: F401  (resolve diffusers' lazy modules)

        print(json.dumps(PHASES[args.phase](args)))
        return
    root = Path(tempfile.mkdtemp(prefix="diffcrit-bench-models-"))
    if args.cuda:
        if not torch.cuda.is_available():
            sys.exit("--cuda: no CUDA device")
        cases = [("cifar", 128, dtype) for dtype in ("float32", "bfloat16")] + \
                [("dit", None, dtype) for dtype in ("float32", "bfloat16")]
        args.device = "cuda"
    else:
        cases = [("cifar", args.width, "float32")]
    reports = []
    for kind, width, dtype in cases:
        args.kind, args.dtype = kind, dtype
        args.width = width or args.width
        args.folder = root / f"{kind}-{width}"
        if not args.folder.exists():
            build_folder(kind, args.folder, width or 0)
        for args.samples in sample_counts:
            if args.rows:
                report = {"model": kind, "width": args.width, "samples": args.samples, "device": args.device,
                          "dtype": dtype, "rows": run_child(args, "r", ["--row-repeats", str(args.row_repeats)])}
                report["ratios"] = {"probe row / sampling row": report["rows"]["probe_over_sampling_row"]}
                print(json.dumps(report), file=sys.stderr)
            else:
                report = bench(args)
                print_report(report)
            reports.append(report)
    if args.out:
        args.out.write_text(json.dumps(reports, indent=1))
    print(json.dumps([{k: r[k] for k in ("model", "samples", "device", "dtype", "ratios")} for r in reports]))


def _option(text: str) -> tuple[str, object]:
    key, _, value = text.partition("=")
    for cast in (int, float):
        try:
            return key, cast(value)
        except ValueError:
            pass
    return key, value


if __name__ == "__main__":
    main()
