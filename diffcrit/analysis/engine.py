"""``analyze``: the run loop of instrumented sampling, probing and the result (docs/design.md §3-§6).

The run, step by step (steps outer, sample batches inner, so every step sees all samples):
  1. resolve the model into the one contract (models/loading.py; rank 0 first under a launcher, so a
     hub download happens once) and check outputs are writable;
  2. for each step: advance this process's batches (sampling/steppers.py), stream y and D(y) if asked,
     keep the Fourier coefficients of y and D(y) per sample at every bin of the low shells (records.py:
     structure factors, decided fractions and correlation lengths follow from them on any resample),
     and probe J along plane waves at the probe points on the steps the probe schedule picks
     (probing/prober.py, probe_schedule.py);
  3. gather the per-sample records of all processes and the final samples' coefficients; with the
     auto schedule, probe the steps that decide the markers from the kept probe points (no second
     sampling pass); with ``--clones``, continue the kept branch states twice (sampling/clones.py);
  4. build the document (document.py): curves (curves.py), markers and the regime's primary marker
     with their bootstrap (critical.py), diagnostics, theory.
Several processes (distributed.py) split the samples and merge the records exactly: the document
equals the single-process one.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ..config import AnalyzeConfig, ConditioningConfig, ModelConfig, make_config, part
from ..distributed import GatheredStates, Ranks, current
from ..errors import UserError
from ..io import Named, check_outputs
from ..models.loading import (LoadedModel, LoadOptions, load_model, model_source, refuse_unused_karras,
                              takes_held_models)
from ..models.scorers import (check_runs, classifier_path, image_shape, latent_decoder, predicted_classes,
                              required_scorer)
from . import cache as result_cache
from . import probe_schedule
from ..spectral.fourier import ProbeDirections, low_bins, plane_wave_directions, shell_coefficients, spectrum
from ..probing.prober import Prober
from ..resources import check_fits, sampling_bytes
from ..progress import NULL, REFINING, SAMPLING, Callback, ProgressEvent, ignore
from ..report.document import Result, clean
from ..sampling import clones, forward_backward
from ..sampling.null import null_stepper_factory, sample_spectrum
from ..sampling.states import INDEX_SUFFIX, check_samples_path, check_states_target, open_states, save_samples
from ..sampling.loop import Trajectories, per_batch
from ..sampling.steppers import StepInfo, make_stepper, step_infos
from .critical import decision_steps, provisional_shell
from .curves import compute_curves
from .document import build_document
from .records import Records, StepRows


@takes_held_models
def analyze(model: Any, *, config: AnalyzeConfig | None = None, shape: tuple[int, int, int] | None = None,
            save_samples_to: str | Path | None = None, save_states: str | Path | None = None,
            callback: Callback | None = None, load_options: LoadOptions | None = None,
            loaded: LoadedModel | None = None, cache: bool = True, reuse: bool = False, **options: Any) -> Result:
    """Analyse ``model`` (hub id, folder, ``builtin:NAME``, callable ``denoise(y, sigma)`` with ``shape``, or a
    diffusers pipeline or denoiser module you hold, the module with ``scheduler=`` a scheduler object: ``hold``).

    The run's settings: ``config`` (a validated ``AnalyzeConfig``), or its fields as keywords in ``options``
    (steps, samples, seed, shells, directions, probe_samples, probe, probe_schedule, linearize_at, ...; unknown
    names are refused). Returns a ``Result``; ``Result.to_dict()``
    is the JSON document of docs/design.md §9 and ``Result.samples`` the final samples (N, C, H, W).
    Under ``torchrun`` / ``accelerate launch`` every process returns the same Result and only rank 0
    writes ``save_samples_to`` and ``save_states``.

    ``cache``: keep the document in the result cache (cache.py; models with a revision only); ``reuse``: return the
    cached document of the same weights and config instead of sampling (``Result.cache_entry`` says where it was
    read; no samples), as ``guide`` and ``reproduce`` do. ``cache=False`` neither reads nor writes.

    A held module is used where it is, in its own dtype (``device`` auto: its device; another device or dtype is
    refused, nothing is moved or copied), in eval mode without gradients for the call only (``borrowed``: its
    training flags and ``requires_grad`` are restored); its scheduler is read, never changed (a copy samples).
    """
    started = time.perf_counter()
    config = resolved_config(config, options)
    ranks = current(config.device)
    if config.samples < ranks.world:
        raise UserError(f"{config.samples} samples cannot be split over {ranks.world} processes",
                        "use at least one sample per process")
    if ranks.is_main:
        check_analysis_outputs(model, save_samples_to=save_samples_to, save_states=save_states,
                               inputs=[("`classifier`", classifier_path(config.classifier))])
    if loaded is None:  # ``loaded``: ``model`` already loaded by the caller with these options (guide's t_c)
        refuse_unused_karras(model, config)
        with ranks.main_first():
            loaded = load_model(model, part(config, ModelConfig), part(config, ConditioningConfig), shape,
                                load_options)
    step_infos(loaded, config.steps, config.karras)  # the steps its scheduler can take, before any work
    key = result_cache.entry_key(loaded, config) if cache else None
    if reuse and key is not None and save_samples_to is None and save_states is None:
        found = result_cache.read_entry(key)
        if not ranks.any(found is None):  # every rank read it (else all sample)
            return Result(found[0], cache_entry=found[1])
    loaded_at = time.perf_counter()
    check_fits(sampling_bytes(-(-config.samples // ranks.world), math.prod(loaded.shape)),
               f"`samples` {config.samples}", "give fewer samples", option="samples")
    classify, classifier = _clone_classifier(loaded, config, load_options)
    directions = plane_wave_directions(loaded.shape, config.shells, config.directions)
    states = _open_states(save_states, config, loaded, ranks)
    try:
        records, samples = run(loaded, config, directions, states, callback or ignore, ranks, classify)
    finally:
        if states is not None:
            states.close()
    records.classifier = classifier
    if save_samples_to is not None and ranks.is_main:
        save_samples(save_samples_to, samples, {"model": loaded.info["id"], "seed": config.seed})
    analysed_at = time.perf_counter()
    document = build_document(loaded, config, directions, records)
    document["environment"]["distributed"] = ranks.describe()
    document["timing"] = {"total_s": time.perf_counter() - started, "load_s": loaded_at - started,
                          **records.seconds, "analysis_s": time.perf_counter() - analysed_at}
    document = clean(document)
    if key is not None and ranks.is_main:
        result_cache.write_entry(key, document)
    return Result(document, samples)


def resolved_config(config: AnalyzeConfig | None, options: dict[str, Any]) -> AnalyzeConfig:
    """``config``, or one built from ``options`` (validated); both at once is a user error."""
    if config is None:
        return make_config(**options)
    if options:
        raise UserError(f"give the settings as config= or as keywords, not both (got {', '.join(sorted(options))})")
    return config.validate()


def check_analysis_outputs(model: Any, *, save_samples_to: str | Path | None = None,
                           save_states: str | Path | None = None, files: Named = (), folders: Named = (),
                           inputs: Named = ()) -> None:
    """Every output of an analysis (``files`` and ``folders``: the caller's others, e.g. the CLI's --out, --plot
    and --logging-dir), checked
    before the model is loaded: formats, places, none inside the model folder or another input
    (``io.check_outputs``)."""
    states = None if save_states is None else Path(save_states)
    states_file = states is not None and states.suffix == ".npy"
    check_outputs(files=[*files, ("`save_samples_to`", save_samples_to),
                         ("`save_states`", states if states_file else None),
                         ("`save_states` index", Path(f"{states}{INDEX_SUFFIX}") if states_file else None)],
                  folders=[("`save_states`", None if states_file else states), *folders],
                  inputs=[("the model folder", model_source(model)), *inputs])
    if save_samples_to is not None:
        check_samples_path(save_samples_to)
    if states is not None:
        check_states_target(states)


def _clone_classifier(loaded: LoadedModel, config: AnalyzeConfig, load_options: LoadOptions | None
                      ) -> tuple[Callable[[torch.Tensor], np.ndarray] | None, dict | None]:
    """``classifier`` (with ``clones``): final samples (n, C, H, W) in the model's frame -> classes (n,) int
    (latents decoded first, as guide scores them), checked on one image before sampling; and what scores them.
    (None, None) without."""
    if config.classifier is None:
        return None, None
    scorer = required_scorer(loaded, config.classifier)
    decode = latent_decoder(loaded, load_options)
    check_runs(scorer, image_shape(loaded, decode))
    return (lambda samples: predicted_classes(scorer, samples, decode, config.batch_size)), scorer.info


def _open_states(target: str | Path | None, config: AnalyzeConfig, loaded: LoadedModel, ranks: Ranks):
    """The --save-states writer, one entry per step record (two per scheduler step for Heun-type schedulers;
    rank 0 writes; under several ranks every rank joins the per-step gather)."""
    if target is None:
        return None
    records = len(step_infos(loaded, config.steps, config.karras))
    writer = open_states(target, records, config.samples, loaded.shape) if ranks.is_main else None
    return writer if ranks.world == 1 else GatheredStates(writer, ranks)


def trunk(loaded: LoadedModel, config: AnalyzeConfig, mine: range, ranks: Ranks | None = None) -> Trajectories:
    """This process's samples (global indices ``mine``) on the model's own sampler: sample i seeded ``seed + i``
    (docs/design.md §9), so the trajectories do not depend on the batch size or on the split over processes."""
    return Trajectories(lambda: make_stepper(loaded, config.steps, config.karras), loaded.shape,
                        [config.seed + i for i in mine], config.batch_size, per_batch(loaded.conditioning),
                        half_precision=loaded.half_precision, any_rank=(ranks or Ranks()).any)


def run(loaded: LoadedModel, config: AnalyzeConfig, directions: ProbeDirections, states, callback: Callback,
        ranks: Ranks | None = None, classify: Callable[[torch.Tensor], np.ndarray] | None = None):
    """Sample this process's batches step by step, recording what the estimators need.

    -> (Records, final samples (N, C, H, W) of all processes). ``states`` has ``write(info, y, d)``
    or is None; ``ranks`` splits the samples (default: one process); ``classify`` (final samples -> classes) labels
    the final samples and every clone's (``--classifier``).
      1. per step: advance the batches, check, record the fields, stream the states, probe (or keep
         the probe points for later);
      2. gather the final samples and the per-sample records of all ranks;
      3. auto schedule: probe the steps that decide the markers, from the kept points.
    """
    ranks = ranks or Ranks()
    mine = ranks.split(config.samples)
    batches = trunk(loaded, config, mine, ranks)
    infos = batches.infos
    records = Records.for_steps(infos)
    records.bins = low_bins(loaded.shape[1], loaded.shape[2], config.shells)
    records.trajectories = config.linearize_at == "trajectory"
    prober = Prober(loaded, config, directions, ranks, config.seed)
    records.gain_shell = prober.shell
    plan = _initial_plan(config, len(infos), records)
    branches = set(clones.branch_steps(len(infos), config.clones))
    keep_points = config.probe_schedule == "auto" and config.linearize_at == "trajectory"
    store = probe_schedule.PointStore(len(infos), (config.probe_samples, *loaded.shape)) if keep_points else None
    try:
        tick = time.perf_counter()
        for step in batches.steps():
            i, info, y, d = step.index, step.info, step.y, step.denoised
            _record_fields(records, y, d)
            if states is not None:
                states.write(info, y, d)
            if i in branches:
                records.branch_states[i] = y.detach().float().cpu()
            records.seconds["sampling_s"] += time.perf_counter() - tick
            tick = time.perf_counter()
            points = _probe_points(config, loaded, y, mine, ranks)
            records.gains.append(_probe_step(prober, i, info, points, i in plan, store))
            records.seconds["probing_s"] += time.perf_counter() - tick
            callback(ProgressEvent(SAMPLING, i + 1, len(infos), sigma=info.sigma, t=info.t))
            tick = time.perf_counter()
        samples = ranks.all_rows(batches.final())
        _merge_rows(records, ranks)
        records.coef_final = shell_coefficients(spectrum(samples), records.bins).numpy()
        if classify is not None and records.branch_states:
            records.final_classes = classify(samples)
        if records.trajectories:
            tick = time.perf_counter()
            _sample_null(loaded, config, samples, records, mine, ranks, callback)
            records.seconds["null_s"] = time.perf_counter() - tick
        if config.probe_schedule == "auto":
            tick = time.perf_counter()
            _refine(prober, records, directions, store, callback)
            records.seconds["probing_s"] += time.perf_counter() - tick
        if records.branch_states:
            tick = time.perf_counter()
            mine_coefs, mine_classes = clones.run_clones(loaded, config, infos, records.branch_states, mine,
                                                         records.bins, callback, classify)
            records.clone_coefs, records.clone_classes = (
                {step: [np.concatenate(ranks.all_objects(c)) for c in pair] for step, pair in part.items()}
                for part in (mine_coefs, mine_classes))
            records.branch_states.clear()
            records.seconds["clones_s"] = time.perf_counter() - tick
        if records.clone_classes:  # forward-backward on the clones' branch steps (sampling/forward_backward.py)
            tick = time.perf_counter()
            kept = forward_backward.run_forward_backward(loaded, config, infos, samples[mine.start:mine.stop],
                                                         sorted(records.clone_classes), mine, classify, callback)
            records.regenerated_classes = {step: np.concatenate(ranks.all_objects(c)) for step, c in kept.items()}
            records.seconds["forward_backward_s"] = time.perf_counter() - tick
        records.probe_method, records.probe_note = prober.method, prober.note
        records.probe_forwards = prober.forwards
    finally:
        if store is not None:
            store.close()
    return records, samples


# Passes of the null: the first measures what the sampler does to the samples' spectrum, the second starts from
# the spectrum it maps onto the model's final power.
NULL_PASSES = 2


def _sample_null(loaded: LoadedModel, config: AnalyzeConfig, samples: torch.Tensor, records: Records, mine: range,
                 ranks: Ranks, callback: Callback) -> None:
    """The Gaussian null of the samples' spectrum through the model's own sampler, on the same seeds
    (sampling/null.py; docs/design.md §6a): D(y) coefficients per step and the final ones into ``records``.
    Nothing where the sampler cannot run it (learned variance): the transition test then uses the formula."""
    karras = dict(sigma_min=config.sigma_min, sigma_max=config.sigma_max, rho=config.rho, churn=config.churn)
    target = sample_spectrum(samples)
    power = target
    for attempt in range(NULL_PASSES):
        factory = null_stepper_factory(loaded, config.steps, power, karras)
        if factory is None:
            return
        batches = Trajectories(factory, loaded.shape, [config.seed + i for i in mine], config.batch_size,
                               any_rank=ranks.any)
        records.null_denoised = StepRows(len(batches.infos))
        for step in batches.steps():
            records.null_denoised.append(shell_coefficients(spectrum(step.denoised), records.bins).cpu().numpy())
            callback(ProgressEvent(NULL, attempt * len(batches.infos) + step.index + 1,
                                   NULL_PASSES * len(batches.infos), sigma=step.info.sigma, t=step.info.t))
        final = ranks.all_rows(batches.final())
        # the sampler changes the power it is given (Euler at 50 steps keeps ~0.9 of it): the next pass starts from
        # the spectrum whose samples have the model's final power, P^2 / P_sampled
        power = target**2 / sample_spectrum(final).clamp_min(1e-30)
    if ranks.world > 1:
        parts = ranks.all_objects(np.stack(list(records.null_denoised)))
        records.null_denoised = StepRows.of(np.concatenate(parts, axis=1))
    records.null_final = shell_coefficients(spectrum(final), records.bins).numpy()


def _initial_plan(config: AnalyzeConfig, n_steps: int, records: Records) -> set[int]:
    """The steps probed while sampling; the schedule's description goes into the JSON."""
    if config.probe_schedule == "every":
        records.schedule = {"mode": "every", "every": config.probe_every}
        return probe_schedule.grid(n_steps, config.probe_every)
    stride = config.probe_every if config.probe_every > 1 else \
        probe_schedule.coarse_stride(n_steps, config.linearize_at)
    records.schedule = {"mode": "auto", "coarse_stride": stride, "refined_steps": []}
    return probe_schedule.grid(n_steps, stride)


def _record_fields(records: Records, y: torch.Tensor, d: torch.Tensor) -> None:
    """Per-sample coefficients of y and D(y) at the low bins (this rank's rows; docs/design.md §4, §5):
    every ensemble observable of the low shells follows from them, on any resample of the samples."""
    for field_, coef in ((y, records.coef_state), (d, records.coef_denoised)):
        coef.append(shell_coefficients(spectrum(field_), records.bins).cpu().numpy())


def _merge_rows(records: Records, ranks: Ranks) -> None:
    """Per-sample coefficients of all ranks, in sample order (contiguous slices in rank order)."""
    if ranks.world == 1:
        return
    for name in ("coef_state", "coef_denoised"):
        parts = ranks.all_objects(np.stack(list(getattr(records, name))))  # each (S, n_r, C, 3)
        setattr(records, name, StepRows.of(np.concatenate(parts, axis=1)))


def _probe_points(config: AnalyzeConfig, loaded: LoadedModel, y: torch.Tensor, mine: range,
                  ranks: Ranks) -> torch.Tensor:
    """The probe points (P, C, H, W) float32 on every rank: global samples 0..P-1 of this step, or y = 0."""
    if config.linearize_at == "zero":
        return torch.zeros(1, *loaded.shape, device=y.device)
    local = max(0, min(mine.stop, config.probe_samples) - mine.start)
    return ranks.all_rows(y[:local].float())


def _probe_step(prober: "Prober", step: int, info: StepInfo, points: torch.Tensor, probe_now: bool,
                store: probe_schedule.PointStore | None) -> np.ndarray | None:
    """One step's probing (record ``step``): keep the points for the auto schedule's refinement; gains if probed
    now."""
    if store is not None:
        store.write(step, points)
    return prober.gains(step, info, points) if probe_now else None


def _refine(prober: "Prober", records: Records, directions: ProbeDirections,
            store: probe_schedule.PointStore | None, callback: Callback) -> None:
    """Auto schedule, after sampling: probe the middles of the marker brackets until they are one step wide."""
    refined: list[int] = []
    curves = compute_curves(records, directions)
    focus = decision_steps(records, curves, prober.config) if records.trajectories else set()
    while True:
        probed = [i for i, g in enumerate(records.gains) if g is not None]
        shell = provisional_shell(records, curves, prober.config)
        unstable = curves.unstable[:, shell] if shell is not None else None
        todo = sorted(probe_schedule.refinement(probed, curves.stiffness[:, 0], curves.xi_eq, unstable,
                                          probe_schedule.REFINED[prober.config.linearize_at], focus))
        if not todo:
            break
        for i in todo:
            info = records.infos[i]
            points = store.read(i).to(prober.device) if store is not None else \
                torch.zeros(1, *prober.loaded.shape, device=prober.device)
            records.gains[i] = prober.gains(i, info, points)
            refined.append(i)
            callback(ProgressEvent(REFINING, i + 1, len(records.infos), sigma=info.sigma, t=info.t))
        curves = compute_curves(records, directions)
    records.schedule["refined_steps"] = sorted(refined)
