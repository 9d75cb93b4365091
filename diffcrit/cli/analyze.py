"""``diffcrit analyze``: instrumented sampling, stiffness probes and the critical time."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ._app import app, command_outputs, console, emit_json, user_errors
from ..config import AnalyzeConfig as DEFAULTS  # every option's default is its config field's
from ..config import make_config
from ._options import (DEFAULT_MODEL, CacheOpt, ClassOpt, ConfigOpt, DeviceOpt, DtypeOpt, LoggingDirOpt, ModelOpt,
                       OfflineOpt, OutOpt, PredictionTypeOpt, PromptOpt, QuietOpt, ReportToOpt, RevisionOpt,
                       SamplesOpt, SchedulerOpt, SeedOpt, StepsOpt, SubfolderOpt, VariantOpt, choice, limits)
from ._render import progress_callback, render_summary


@app.command()
@user_errors
def analyze(
    model: ModelOpt = DEFAULT_MODEL,
    steps: StepsOpt = DEFAULTS.steps,
    samples: SamplesOpt = DEFAULTS.samples,
    seed: SeedOpt = DEFAULTS.seed,
    batch_size: Annotated[int, typer.Option(
        help="Samples per forward call.", **limits(DEFAULTS, "batch_size"))] = DEFAULTS.batch_size,
    shells: Annotated[int, typer.Option(
        help="Fourier shells probed, 0..K-1.", **limits(DEFAULTS, "shells"))] = DEFAULTS.shells,
    directions: Annotated[int, typer.Option(
        help="Plane-wave directions per shell (shell 0: every channel's DC mode).",
        **limits(DEFAULTS, "directions"))] = DEFAULTS.directions,
    probe_samples: Annotated[Optional[int], typer.Option(
        help="Samples whose trajectory is probed (default: samples / 8, at least 2).",
        **limits(DEFAULTS, "probe_samples"))] = DEFAULTS.probe_samples,
    shell_gain: Annotated[choice(DEFAULTS, "shell_gain"), typer.Option(
        help="hutchinson: one random-sign combination of each shell's directions per probe point (one probe per "
        "shell, the same mean in expectation) | directions: every direction on its own (docs/design.md §3).")
    ] = DEFAULTS.shell_gain,
    probe: Annotated[choice(DEFAULTS, "probe"), typer.Option(
        help="How J v is computed (auto: finite differences for networks, JVP for callables).")] = DEFAULTS.probe,
    linearize_at: Annotated[choice(DEFAULTS, "linearize_at"), typer.Option(
        help="trajectory (the sampled states) | "
        "zero (y = 0, where the theory of docs/design.md §7 is exact).")] = DEFAULTS.linearize_at,
    probe_schedule: Annotated[choice(DEFAULTS, "probe_schedule"), typer.Option(
        help="every: probe every --probe-every-th step while sampling | auto: a coarse pass while sampling, then the "
        "steps that decide each marker, from kept probe points (no resampling).")] = DEFAULTS.probe_schedule,
    probe_every: Annotated[int, typer.Option(
        help="every: probe every N-th step (the last always); auto: the coarse stride (1: about steps/6 along "
        "trajectories, steps/12 at y = 0).", **limits(DEFAULTS, "probe_every"))] = DEFAULTS.probe_every,
    fd_step: Annotated[float, typer.Option(
        help="Finite-difference step, relative to sqrt(1 + sigma^2) (below 1).",
        **limits(DEFAULTS, "fd_step"))] = DEFAULTS.fd_step,
    probe_batch: Annotated[int, typer.Option(
        help="(probe point, direction) pairs per probe forward (finite differences: twice as many rows); lower it "
        "when probes run out of GPU memory (results unchanged).",
        **limits(DEFAULTS, "probe_batch"))] = DEFAULTS.probe_batch,
    bootstrap: Annotated[int, typer.Option(
        help="Bootstrap resamples for every marker's ci95 and presence and the curves' CI bands "
        "(0: none).", **limits(DEFAULTS, "bootstrap"))] = DEFAULTS.bootstrap,
    decision_shell: Annotated[Optional[int], typer.Option(
        help="Shell whose decided fraction gives the decision marker (default: the lowest varying shell with >= 4 FFT "
        "bins; docs/design.md §6).", **limits(DEFAULTS, "decision_shell"))] = DEFAULTS.decision_shell,
    clones: Annotated[int, typer.Option(
        help="Branch steps at which every sample is continued twice with fresh noise; the clones' correlation "
        "measures the decided fraction directly (costs about this many times the "
        "sampling; 0: off).", **limits(DEFAULTS, "clones"))] = DEFAULTS.clones,
    classifier: Annotated[Optional[str], typer.Option(
        help="With --clones: classify every clone's final sample and the trunk's (a diffcrit classifier folder, a "
        "TorchScript file, a transformers folder, or 'builtin': the one the model ships); the share of clone pairs "
        "whose classes agree gives the class_decision marker, and every trunk final noised to each branch step and "
        "regenerated (half the clones' cost) gives the forward-backward class_decision_fb beside it "
        "(docs/design.md, markers).")] = DEFAULTS.classifier,
    device: DeviceOpt = DEFAULTS.device,
    dtype: DtypeOpt = DEFAULTS.dtype,
    class_label: ClassOpt = DEFAULTS.class_label,
    prompt: PromptOpt = DEFAULTS.prompt,
    prompt_embeds: Annotated[Optional[Path], typer.Option(
        help="Text models: a safetensors file of the pipeline's encode_prompt outputs under its own argument names "
        "(prompt_embeds, pooled_prompt_embeds, prompt_attention_mask, ...) instead of --prompt: the text encoders "
        "are not loaded. With --guidance-scale it also holds the negative branch "
        "(negative_prompt_embeds, ...).")] = DEFAULTS.prompt_embeds,
    guidance_scale: Annotated[float, typer.Option(
        help="Classifier-free guidance at every step as the model's pipeline applies it (SD, SD3, PixArt, Sana: "
        "guidance_scale; Flux: true_cfg_scale), away from --negative-prompt or the null class; the probed D(y) is "
        "the guided one (two forwards per evaluation). 1: none (the model's own denoiser).",
        **limits(DEFAULTS, "guidance_scale"))] = DEFAULTS.guidance_scale,
    negative_prompt: Annotated[Optional[str], typer.Option(
        help="Text models with --guidance-scale: the unconditional branch (default: the pipeline's, the empty "
        "prompt; SDXL: zeros).")] = DEFAULTS.negative_prompt,
    height: Annotated[Optional[int], typer.Option(
        help="Transformer pipelines (SD3, Flux, PixArt, Sana): image height in pixels "
        "(default: the pipeline's).", **limits(DEFAULTS, "height"))] = DEFAULTS.height,
    width: Annotated[Optional[int], typer.Option(
        help="... and width in pixels.", **limits(DEFAULTS, "width"))] = DEFAULTS.width,
    scheduler: SchedulerOpt = DEFAULTS.scheduler,
    prediction_type: PredictionTypeOpt = DEFAULTS.prediction_type,
    sigma_min: Annotated[float, typer.Option(
        help="Callable/analytic models: smallest sigma of the Karras schedule.")] = DEFAULTS.sigma_min,
    sigma_max: Annotated[float, typer.Option(help="Callable/analytic models: largest sigma.")] = DEFAULTS.sigma_max,
    rho: Annotated[float, typer.Option(help="Callable/analytic models: Karras rho.")] = DEFAULTS.rho,
    churn: Annotated[float, typer.Option(
        help="Callable/analytic models: stochastic churn (0 = deterministic).",
        **limits(DEFAULTS, "churn"))] = DEFAULTS.churn,
    subfolder: SubfolderOpt = None,
    revision: RevisionOpt = None,
    variant: VariantOpt = None,
    offline: OfflineOpt = False,
    cache: CacheOpt = True,
    out: OutOpt = None,
    save_samples: Annotated[Optional[Path], typer.Option(
        help="Write the final samples (safetensors, key 'samples', N x C x H x W).")] = None,
    save_states: Annotated[Optional[Path], typer.Option(
        help="Stream per-step y and D(y): a folder (one safetensors per step) or a .npy file.")] = None,
    plot: Annotated[Optional[Path], typer.Option(help="Also write the figure (.png/.svg/.pdf).")] = None,
    report_to: ReportToOpt = None,
    logging_dir: LoggingDirOpt = None,
    quiet: QuietOpt = False,
    config_file: ConfigOpt = None,
) -> None:
    """Sample with instrumentation, probe low-k mode stiffness, and find the critical time.

    Writes the JSON document (docs/design.md §9) to stdout or --out; progress and a summary go to stderr; with
    --report-to, the curves and the critical block also go to experiment trackers.
    Under torchrun / accelerate launch the samples are split over the processes; rank 0 alone
    prints and writes, the others exit quietly with the same code.
    """
    from .. import analyze as run_analysis
    from ..distributed import is_main_process
    from ..errors import UserError
    from ..models.loading import LoadOptions
    from ..report.trackers import log_result, tracker_names

    main = is_main_process()
    load = LoadOptions(subfolder=subfolder, revision=revision, variant=variant, offline=offline)
    try:
        config = make_config(steps=steps, samples=samples, seed=seed, batch_size=batch_size, sigma_min=sigma_min,
                             sigma_max=sigma_max, rho=rho, churn=churn, device=device, dtype=dtype, scheduler=scheduler,
                             prediction_type=prediction_type, height=height, width=width, class_label=class_label,
                             prompt=prompt, prompt_embeds=None if prompt_embeds is None else str(prompt_embeds),
                             guidance_scale=guidance_scale, negative_prompt=negative_prompt, shells=shells,
                             directions=directions, probe_samples=probe_samples, shell_gain=shell_gain, probe=probe,
                             linearize_at=linearize_at, fd_step=fd_step, probe_batch=probe_batch,
                             probe_every=probe_every,
                             probe_schedule=probe_schedule, bootstrap=bootstrap, decision_shell=decision_shell,
                             clones=clones, classifier=classifier)
        if main:
            _check_outputs(model, out=out, plot=plot, save_samples=save_samples, save_states=save_states,
                           prompt_embeds=prompt_embeds, classifier=classifier, logging_dir=logging_dir)
        trackers = tracker_names(report_to, logging_dir)  # each installed, before any work
        with progress_callback(console, enabled=main and not quiet) as callback:
            result = run_analysis(model, config=config, save_states=save_states, callback=callback,
                                  load_options=load, cache=cache)
    except UserError:
        if main:
            raise
        raise typer.Exit(2) from None  # rank 0 prints the one line
    except KeyboardInterrupt as interrupt:
        if save_states is not None:
            interrupt.kept = f"the steps streamed to --save-states {save_states}"
        raise
    if not main:
        return
    document = result.to_dict()
    if not quiet:
        render_summary(console, document)
    with command_outputs(quiet) as outputs:  # all or nothing: a figure that cannot be written keeps the old JSON
        if plot is not None:
            from ..report.figures import figure_bytes, figure_format

            outputs.write_bytes(plot, figure_bytes([document], figure_format(plot)))
        if save_samples is not None:
            from ..sampling.states import samples_bytes

            metadata = {"model": document["model"]["id"], "seed": document["config"]["seed"]}
            outputs.write_bytes(save_samples, samples_bytes(result.samples, metadata))
        emit_json(document, out, outputs)
    if trackers:
        log_result(document, trackers, logging_dir)


def _check_outputs(model: str, *, out: Path | None, plot: Path | None, save_samples: Path | None,
                   save_states: Path | None, prompt_embeds: Path | None, classifier: str | None,
                   logging_dir: Path | None) -> None:
    """Every output's format and place, before the model is loaded (``check_analysis_outputs``)."""
    from ..analysis.engine import check_analysis_outputs
    from ..models.scorers import classifier_path

    if plot is not None:
        from ..report.figures import figure_format

        figure_format(plot)
    check_analysis_outputs(model, save_samples_to=save_samples, save_states=save_states,
                           files=[("--out", out), ("--plot", plot)], folders=[("--logging-dir", logging_dir)],
                           inputs=[("--prompt-embeds", prompt_embeds),
                                   ("--classifier", classifier_path(classifier))])
