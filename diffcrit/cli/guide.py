"""``diffcrit guide``: classifier-free guidance pulses at the critical time, measured."""

from __future__ import annotations

import io
import math
import re
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..errors import UserError
from ..guidance.config import GuideConfig as DEFAULTS  # every option's default is its config field's
from ..io import StagedOutputs, check_outputs
from ..progress import REFINING, SAMPLING
from ..report.view import Arm, Comparison, GuideView, Sweep
from ._app import app, command_flags, command_outputs, console, emit_json, render_parameters, user_errors
from ._options import (CacheOpt, ConfigOpt, DeviceOpt, DtypeOpt, LoggingDirOpt, ModelOpt, OfflineOpt, OutOpt,
                       PredictionTypeOpt, QuietOpt, ReportToOpt, RevisionOpt, SamplesOpt, SchedulerOpt, SeedOpt,
                       StepsOpt, SubfolderOpt, VariantOpt, choice, limits)
from ._render import STAGE_NAMES, progress_callback

# The t_c analysis guide runs first (analyze's stages), then one bar per arm.
PROGRESS_NAMES = {**STAGE_NAMES, SAMPLING: "measuring t_c: sampling", REFINING: "measuring t_c: refining probes"}


@app.command()
@user_errors
def guide(
    model: ModelOpt = ...,
    at: Annotated[str, typer.Option(
        help="Treatment arm: critical (window centred on t_c) | "
        "a:b (a window in t = log(1+sigma^2)) | all | none.")] = DEFAULTS.at,
    compare: Annotated[Optional[str], typer.Option(
        help="Control arms, comma-separated: random (same width in t), random-steps (same number of steps), none, all, "
        "a:b. Default: random,random-steps,none,all (less the treatment; random ones only beside a "
        "window).")] = DEFAULTS.compare,
    base: Annotated[choice(DEFAULTS, "base"), typer.Option(
        help="What a sample runs on outside its window: conditional (the class, no CFG) | unconditional (the null "
        "class; inside the window the class at --guidance-scale, where 1 means the class label alone).")]
        = DEFAULTS.base,
    guidance_scale: Annotated[Optional[float], typer.Option(
        "--guidance-scale", help="Guidance scale S inside the window (> 1, or >= 1 with --base "
        f"unconditional; default {DEFAULTS.guidance_scale}).", **limits(DEFAULTS, "guidance_scale"))]
        = None,  # None: the config's, or the old --scale
    scale: Annotated[Optional[float], typer.Option(
        "--scale", hidden=True, **limits(DEFAULTS, "guidance_scale"))] = None,  # before 0.2
    window_width: Annotated[Optional[float], typer.Option(
        "--window-width",
        help=f"Width W of the critical window in t (default {DEFAULTS.window_width}: one e-fold of alpha_bar, "
        "chosen beforehand).")] = None,  # None: the config's, or the old --width
    width: Annotated[Optional[float], typer.Option("--width", hidden=True)] = None,  # before 0.2
    critical_from: Annotated[Optional[Path], typer.Option(
        help="Take t_c (critical.t, ci95) from this analyze result JSON instead of measuring it.")] = None,
    classifier: Annotated[Optional[Path], typer.Option(
        help="Scores class alignment: a diffcrit classifier folder, a TorchScript file (images in [-1,1] -> logits) or "
        "a transformers image-classification folder. Built-ins ship their own.")] = None,
    label_map: Annotated[Optional[str], typer.Option(
        help="Model class id -> classifier output: a JSON file {\"3\": 207} or pairs 3=207,5=1.")] = None,
    class_label: Annotated[Optional[int], typer.Option(
        "--class-label", help="One target class for every sample.")] = DEFAULTS.class_label,
    classes: Annotated[Optional[str], typer.Option(
        help="Target classes a,b,c cycled over samples (default: every class in turn).")] = DEFAULTS.classes,
    steps: StepsOpt = DEFAULTS.steps,
    samples: SamplesOpt = DEFAULTS.samples,
    seed: SeedOpt = DEFAULTS.seed,
    batch_size: Annotated[int, typer.Option(
        help="Samples per batch (a guided step runs up to twice this per forward).",
        **limits(DEFAULTS, "batch_size"))] = DEFAULTS.batch_size,
    sweep: Annotated[Optional[int], typer.Option(
        help="Sweep blocks of K consecutive scheduler steps across the schedule (same seeds and targets in every "
        "block, plus none and all) instead of --at/--compare; writes the profile and its peak "
        "(JSON sweep).", **limits(DEFAULTS, "sweep"))] = DEFAULTS.sweep,
    analyze_samples: Annotated[int, typer.Option(
        help="Samples for measuring t_c when no --critical-from is given.",
        **limits(DEFAULTS, "analyze_samples"))] = DEFAULTS.analyze_samples,
    bootstrap: Annotated[int, typer.Option(
        help="Bootstrap resamples for the ci95 of means and paired differences.",
        **limits(DEFAULTS, "bootstrap"))] = DEFAULTS.bootstrap,
    suggest: Annotated[bool, typer.Option(
        "--suggest", help="Only print the recommended guidance interval around t_c (t, sigma, steps).")] = False,
    save_guider: Annotated[Optional[Path], typer.Option(
        help="With --suggest: write the suggested diffusers ClassifierFreeGuidance (start/stop: exactly the "
        "suggested steps) into this folder; apply it with pipe.update_components(guider="
        "ClassifierFreeGuidance.from_pretrained(DIR)).")] = None,
    device: DeviceOpt = DEFAULTS.device,
    dtype: DtypeOpt = DEFAULTS.dtype,
    scheduler: SchedulerOpt = DEFAULTS.scheduler,
    prediction_type: PredictionTypeOpt = DEFAULTS.prediction_type,
    subfolder: SubfolderOpt = None,
    revision: RevisionOpt = None,
    variant: VariantOpt = None,
    offline: OfflineOpt = False,
    cache: CacheOpt = True,
    out: OutOpt = None,
    save_images: Annotated[Optional[Path], typer.Option(
        help="Write the decoded images into this folder: one grid PNG per arm (ARM.png) and one PNG per sample, "
        "named by its seed (ARM/000042.png, EDM2's naming; a folder FID tools read as it is).")] = None,
    save_samples: Annotated[Optional[Path], typer.Option(
        help="Write final samples (safetensors: samples.<arm> N x C x H x W in model space, and classes).")] = None,
    report_to: ReportToOpt = None,
    logging_dir: LoggingDirOpt = None,
    quiet: QuietOpt = False,
    config_file: ConfigOpt = None,
) -> None:
    """Apply classifier-free guidance only in a window of t (a pulse) and measure class alignment.

    Every arm uses the same seeds and target classes; the JSON (kind "guide") goes to stdout or --out,
    the table to stderr; with --report-to, the summary also goes to experiment trackers. With --suggest: the
    recommended interval only (kind "guide-suggestion").
    """
    from ..distributed import is_main_process
    from ..guidance.engine import guide as run_guide
    from ..guidance.engine import suggest as run_suggest
    from ..models.loading import LoadOptions
    from ..report.trackers import log_result, tracker_names

    # Under torchrun / accelerate launch the samples are split; rank 0 alone prints and writes.
    main = is_main_process()
    quiet = quiet or not main
    # 1. Cheap checks before any model is loaded.
    if suggest:
        _refuse_with_suggest(at=at, compare=compare, classifier=classifier, label_map=label_map,
                             save_images=save_images, save_samples=save_samples, report_to=report_to,
                             logging_dir=logging_dir)
    trackers = tracker_names(report_to, logging_dir)  # each installed, before any work
    if main:
        _check_outputs(model, out=out, save_samples=save_samples, save_images=save_images, save_guider=save_guider,
                       logging_dir=logging_dir,
                       inputs=[("--critical-from", critical_from), ("--classifier", classifier),
                               ("--label-map", label_map if label_map and Path(label_map).exists() else None)],
                       seed=seed, samples=samples)
    if save_guider is not None and not suggest:
        raise UserError("--save-guider writes the suggestion's guider", "add --suggest")
    options = dict(at=at, compare=_split(compare, "--compare", str), steps=steps, base=base, sweep=sweep,
                   guidance_scale=_renamed(guidance_scale, scale, "--guidance-scale", "--scale", DEFAULTS),
                   window_width=_renamed(window_width, width, "--window-width", "--width", DEFAULTS),
                   samples=samples, seed=seed, batch_size=batch_size, class_label=class_label,
                   classes=_split(classes, "--classes", int), analyze_samples=analyze_samples, bootstrap=bootstrap,
                   device=device, dtype=dtype, scheduler=scheduler, prediction_type=prediction_type)
    load = LoadOptions(subfolder=subfolder, revision=revision, variant=variant, offline=offline)
    # 2. Run.
    with progress_callback(console, enabled=not quiet, names=PROGRESS_NAMES) as callback:
        if suggest:
            document = run_suggest(model, critical_from=critical_from, callback=callback, load_options=load,
                                   cache=cache, **options)
        else:
            try:
                result = run_guide(model, critical_from=critical_from, classifier=classifier, label_map=label_map,
                                   keep_images=save_images is not None, callback=callback, load_options=load,
                                   cache=cache, **options)
            except UserError:
                if main:
                    raise
                raise typer.Exit(2) from None  # rank 0 prints the one line
            document = result.to_dict()
    if not main:
        return
    # 3. Outputs: all or nothing (a grid that cannot be written keeps the old JSON).
    if not quiet:
        (render_suggestion if suggest else render_guide)(console, document)
    with command_outputs(quiet) as outputs:
        if save_guider is not None:
            _stage_guider(outputs, save_guider, document)
        if save_samples is not None:
            _stage_samples(outputs, save_samples, result)
        if save_images is not None:
            _stage_images(outputs, save_images, result.images, document["config"]["seed"])
        emit_json(document, out, outputs)
    if trackers:
        log_result(document, trackers, logging_dir)


def _stage_guider(outputs: StagedOutputs, folder: Path, document: dict) -> None:
    """The suggestion's ClassifierFreeGuidance as ``save_pretrained`` writes it, staged with the other outputs."""
    from ..diffusers import guider_file

    guider = (document.get("diffusers") or {}).get("guider")
    if guider is None:
        raise UserError("this scheduler has no diffusers guider to save (see the suggestion's notes)",
                        "drop --save-guider")
    name, text = guider_file(guider["config"])
    outputs.folder(folder, "--save-guider folder")
    outputs.write_text(folder / name, text)
    guider["saved_to"] = str(folder)


def _refuse_with_suggest(**given) -> None:
    """--suggest prints the interval around t_c only: an option it would ignore is refused."""
    defaults = {"at": "critical"}
    for name, value in given.items():
        if value is not None and value != defaults.get(name):
            option = "--" + name.replace("_", "-")
            raise UserError(f"--suggest recommends the interval around t_c only and ignores {option}",
                            f"drop {option}, or drop --suggest to run the arms")


def _check_outputs(model: str, *, out: Path | None, save_samples: Path | None, save_images: Path | None,
                   save_guider: Path | None, logging_dir: Path | None, inputs: list, seed: int,
                   samples: int) -> None:
    """Every output's format and place, before the model is loaded (``io.check_outputs``); ``seed``, ``samples``:
    the seeds whose PNGs ``save_images`` may already hold (a rerun overwrites them)."""
    from ..models.loading import model_source
    from ..sampling.states import check_samples_path

    for option, folder in (("--save-images", save_images), ("--save-guider", save_guider)):
        if folder is not None and folder.exists() and not folder.is_dir():
            raise UserError(f"{option} {folder} exists and is not a folder", "give a folder")
    check_outputs(files=[("--out", out), ("--save-samples", save_samples)],
                  folders=[("--save-images", save_images), ("--save-guider", save_guider),
                           ("--logging-dir", logging_dir)],
                  inputs=[("the model folder", model_source(model)), *inputs])
    if save_samples is not None:
        check_samples_path(save_samples)
    if save_images is not None and save_images.is_dir():
        from ..report.grids import foreign_samples

        stale = foreign_samples(save_images, range(seed, seed + samples))
        if stale:
            raise UserError(f"--save-images {save_images} holds {len(stale)} sample PNG(s) of seeds this run does not "
                            f"draw (e.g. {stale[0].relative_to(save_images)}): an FID tool would read them as this "
                            "run's", "give an empty folder, or remove the old arm folders")


def _renamed(value, old_value, flag: str, old_flag: str, config: type):
    """A renamed option: the new flag, else its old hidden name, else the config's default."""
    if value is not None and old_value is not None:
        raise UserError(f"{old_flag} is the old name of {flag}: give one of them")
    if value is None:
        value = old_value
    name = flag.lstrip("-").replace("-", "_")
    return value if value is not None else getattr(config, name)


def _split(text: str | None, option: str, kind: type) -> list | None:
    if text is None:
        return None
    parts = [p.strip() for p in text.split(",") if p.strip()]
    try:
        values = [kind(p) for p in parts]
    except ValueError:
        raise UserError(f"{option} {text!r} is not a comma-separated list of {kind.__name__}s") from None
    if not values:
        raise UserError(f"{option} is empty")
    return values


def _fmt(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:.{digits}g}" if isinstance(value, float) else str(value)


def _ci(ci, fmt: str = ".3f") -> str:
    return f"[{ci[0]:{fmt}}, {ci[1]:{fmt}}]" if ci else "-"


def _p(comparison: Comparison) -> str:
    """The comparison's p-value (``wilcoxon_p`` in results of diffcrit 0.1)."""
    return f"{comparison.p_value:.2g}" if comparison.p_value is not None else "-"


def _windows(arm: Arm) -> str:
    windows = arm.windows
    if not windows:
        return "never"
    if len(windows) == 1:
        return f"[{windows[0][0]:.2f},{windows[0][1]:.2f}]"
    widths = [hi - lo for lo, hi in windows]
    if max(widths) - min(widths) < 1e-9:
        return f"random, w={widths[0]:.3g}"
    return "random, same steps"


def render_guide(out: Console, document: dict) -> None:
    """Arms (windows, guided steps, metric means with ci95) and the paired comparisons."""
    result = GuideView.from_document(document)
    critical, metrics = result.critical, result.metric_names
    n = result.arms[0].n if result.arms else 0
    scale = "-" if result.guidance_scale is None else f"{result.guidance_scale:g}"
    title = f"{result.model.id} — guidance pulses, S = {scale}, {result.base} base, n = {n} per arm"
    if critical is not None:
        title += f", t_c = {critical.t:.3g} {_ci(critical.ci95, '.3g')}"
    # At 80 columns (CI logs) the numbers fit without an edge pad; only the window text may wrap.
    table = Table(title=escape(title + "; cells: mean [ci95]"), title_justify="left", box=box.SIMPLE_HEAD,
                  show_edge=False, pad_edge=False)
    for column in ("arm", "window in t", "steps", *metrics):
        table.add_column(column, justify="left" if column in ("arm", "window in t") else "right",
                         no_wrap=column != "window in t", overflow="fold")
    for arm in result.arms:
        cells = [arm.name, _windows(arm), _fmt(arm.guided_steps_mean)]
        for m in metrics:
            stat = arm.metrics[m]
            cells.append(f"{stat.mean:.3f} {_ci(stat.ci95, '.2f')}")
        table.add_row(*(escape(c) for c in cells))
    out.print(table)
    for note in result.notes:
        out.print(f"note: {render_parameters(note, command_flags())}", style="yellow", markup=False, highlight=False)
    if not result.scored:
        out.print("no classifier: every arm was sampled, no alignment was scored (pass --classifier)", style="yellow")
        return
    if result.sweep is not None:
        render_sweep(out, result.sweep)
        return
    treatment = result.arms[0].name
    comparisons = Table(title=escape(f"{treatment} − other arm, paired; p tests the mean difference (target_prob: "
                                     "sign-flip permutation, top1: McNemar exact), r: matched-pairs rank-biserial"),
                        title_justify="left", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for column in ("versus", "metric", "diff", "ci95", "p", "r"):
        comparisons.add_column(column, justify="left" if column in ("versus", "metric") else "right", no_wrap=True)
    for c in result.comparisons:
        comparisons.add_row(*(escape(cell) for cell in (
            c.versus, c.metric, f"{c.diff_mean:+.3g}", _ci(c.ci95, "+.2g"), _p(c), f"{c.effect_size:+.2f}")))
    out.print(comparisons)


def render_sweep(out: Console, sweep: Sweep) -> None:
    """The sweep's peak; the blocks' metrics are the arms table above (one arm per block)."""
    peak = sweep.peak
    if peak is not None:
        steps = "?..?" if peak.steps is None else f"{peak.steps[0]}..{peak.steps[1]}"
        out.print(f"sweep of blocks of {sweep.block_steps} steps ({sweep.base} base): {peak.metric} peaks "
                  f"at t = {peak.t:.3g} {_ci(peak.ci95, '.3g')} (steps {steps}, {_fmt(peak.share)} of resamples)",
                  markup=False, highlight=False)


def render_suggestion(out: Console, document: dict) -> None:
    """The interval in t, sigma and steps; the evidence's source (often a long path) on its own line below."""
    interval, critical = document["interval"], document["critical"]
    table = Table(title=escape(f"{document['model']['id']} — recommended guidance interval"), title_justify="left")
    table.add_column("")
    table.add_column("value", justify="right")
    rows = [("t_c (evidence)", f"{critical['t']:.4g} (ci95 {_ci(critical.get('ci95'), '.4g')})"),
            ("window width W (t)", _fmt(document["window_width_t"])),
            ("t", f"[{interval['t'][0]:.4g}, {interval['t'][1]:.4g}]"),
            ("sigma", f"[{interval['sigma'][0]:.4g}, {interval['sigma'][1]:.4g}]"),
            (f"steps of {interval['num_inference_steps']} ({interval['scheduler']})",
             f"{interval['steps'][0]}..{interval['steps'][1]} ({interval['step_count']} steps)"),
            ("timesteps", f"{_fmt(interval['timesteps'][0])} .. {_fmt(interval['timesteps'][-1])}")]
    for name, value in rows:
        table.add_row(escape(name), escape(value))
    out.print(table)
    out.print(f"t_c from: {critical['source']}", markup=False, highlight=False)
    handoff = document.get("diffusers") or {}
    if handoff.get("guider"):
        config = handoff["guider"]["config"]
        out.print(f"diffusers {handoff['tested_with']}: ClassifierFreeGuidance("
                  f"guidance_scale={config['guidance_scale']:g}, start={config['start']:.6g}, "
                  f"stop={config['stop']:.6g}) guides loop steps "
                  f"{handoff['step_window'][0]}..{handoff['step_window'][1]} of {handoff['num_inference_steps']}",
                  markup=False, highlight=False)
    elif handoff.get("note"):
        out.print(f"note: {handoff['note']}", style="yellow", markup=False, highlight=False)
    for note in document.get("notes") or []:
        out.print(f"note: {render_parameters(note, command_flags())}", style="yellow", markup=False, highlight=False)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "-", name)


def _stage_samples(outputs: StagedOutputs, path: Path, result) -> None:
    from safetensors.torch import save

    tensors = {f"samples.{name}": s.float().contiguous() for name, s in result.samples.items()}
    tensors["classes"] = result.targets.contiguous()
    meta = {"model": str(result.document["model"]["id"]), "seed": str(result.document["config"]["seed"]),
            "arms": ",".join(result.samples)}
    outputs.write_bytes(path, save(tensors, metadata=meta))


def _stage_images(outputs: StagedOutputs, folder: Path, images: dict, first_seed: int) -> None:
    """Per arm: a grid PNG (images in [-1, 1] tiled in rows of ceil(sqrt(N)), upscaled to >= 48 px cells) and a
    folder of one PNG per sample at its own resolution, named by the sample's seed (``report.grids.sample_pngs``)."""
    from PIL import Image

    from ..report.grids import image_grid, sample_pngs, tiles

    outputs.folder(folder, "--save-images folder")
    for name, batch in images.items():
        n, _, h, w = batch.shape
        zoom = max(1, math.ceil(48 / max(h, w)))
        picture = image_grid(tiles(batch), math.ceil(math.sqrt(n)))  # grey or RGB
        picture = picture.resize((picture.width * zoom, picture.height * zoom), Image.NEAREST)
        buffer = io.BytesIO()
        picture.save(buffer, format="PNG")
        outputs.write_bytes(folder / f"{_safe(name)}.png", buffer.getvalue())
        arm_folder = outputs.folder(folder / _safe(name), "--save-images folder")
        for file_name, data in sample_pngs(batch, first_seed):
            outputs.write_bytes(arm_folder / file_name, data)
