"""``guide`` and ``suggest``: the guidance-pulse experiment (docs/guide.md), step by step.

  1. cheap checks and loading: config, model (``load_model``), classes, classifier, step grid;
  2. the critical time: ``--critical-from`` (critical.t of a result JSON) or measured by
     ``analyze`` on the same model, steps and first target class, with seeds seed + N ..
     (apart from the guide samples seed .. seed + N - 1);
  3. every arm sampled with the same seeds and target classes (guidance.py);
  4. decoding (latent models: through the VAE, loaded only for scoring or images) and scoring
     (alignment.py): per-sample target_prob and top1;
  5. the document: arms with means and ci95, the treatment (first arm) versus every other arm.

Defaults, fixed before any experiment: W = 1.0 in t, one e-fold of the signal fraction
alpha_bar = exp(-t) — about a third to a half of the limited guidance intervals of Kynkäänniemi
et al. (2024), which span 2.2–3.3 in t (sigma in (0.28, 2.9] and (0.28, 5.42]); a pulse should be
narrower than the whole useful band. S = 3.0, the scale of the built-ins' sample checks.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch

if TYPE_CHECKING:
    import pandas

from . import alignment
from ..config import ModelConfig, part
from .config import GuideConfig, make_guide_config  # noqa: F401  (make_guide_config: the API's)
from ..resources import check_fits, sampling_bytes
from ..distributed import current
from ..report.document import KIND_GUIDE, Outcome
from ..report.view import SOURCE_CRITICAL, AnalyzeView, Critical, WorkingTime
from ..errors import ConditioningError, ModelOutputError, UserError
from ..frame import t_to_sigma
from .pulses import (ARM_ALL, ARM_CRITICAL, ARM_NONE, NOT_CLASS_CONDITIONAL, RANDOM_ARMS, Arm, ClassGuidance,
                     arm_names, block_arm_name, build_arms, check_window, class_guidance, fixed_window, sample_arm,
                     step_t_grid, sweep_arms, sweep_blocks)
from ..models.loading import (LoadedModel, LoadOptions, load_model, load_scheduler, takes_held_models,
                              with_class_label)
from ..progress import Callback, ignore
from ..models.scorers import decode_all, image_shape, latent_decoder, resolve_scorer
from ..sampling.steppers import StepInfo, scheduler_steps, step_infos

ANALYZE_BOOTSTRAP = 200  # resamples for the ci95 of a t_c measured here (analyze's default), capped by --bootstrap


# --------------------------------------------------------------------------------------------
# The run


@dataclass
class GuideResult(Outcome):
    """What ``guide`` returns: the JSON document, final samples per arm (model space) and,
    when asked for, the decoded images per arm (N, C, H, W) in [-1, 1]."""

    KINDS: ClassVar[tuple[str, ...]] = (KIND_GUIDE,)

    samples: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)
    images: dict[str, torch.Tensor] | None = field(default=None, repr=False)
    targets: torch.Tensor | None = field(default=None, repr=False)

    def to_pandas(self) -> pandas.DataFrame:
        """Each arm's metrics, one row per (arm, metric): columns ``arm, metric, value, ci_lo, ci_hi`` (the mean and
        its ci95; ``report/table.py``). Needs pandas (``pip install 'diffcrit[pandas]'``)."""
        from ..report.table import GUIDE_COLUMNS, guide_rows, to_frame

        return to_frame(guide_rows(self.document), GUIDE_COLUMNS)


def load_guided_model(model: Any, config: GuideConfig,
                      load_options: LoadOptions | None) -> tuple[LoadedModel, ClassGuidance]:
    """Load through ``load_model`` without conditioning (guide sets the labels of every step itself)."""
    try:
        loaded = load_model(model, part(config, ModelConfig), None, None, load_options)
    except ConditioningError:
        raise UserError(NOT_CLASS_CONDITIONAL, f"{model} is not") from None
    if loaded.scheduler is None:
        raise UserError(NOT_CLASS_CONDITIONAL, f"{model} has no diffusers scheduler")
    guidance = class_guidance(loaded)
    step_infos(loaded, config.steps)  # the steps its scheduler can take, before any work
    return loaded, guidance


def target_classes(config: GuideConfig, guidance: ClassGuidance) -> torch.Tensor:
    """(N,) int64: --class-label for all, --classes cycled, or all classes in turn."""
    n = guidance.n_classes
    chosen = [config.class_label] if config.class_label is not None else (config.classes or list(range(n)))
    bad = [c for c in chosen if not 0 <= int(c) < n]
    if bad:
        reserved = f" (null id {guidance.null_class} is reserved for guidance)" if guidance.null_class == n else ""
        raise UserError(f"class id(s) {bad} out of range", f"this model has classes 0..{n - 1}" + reserved)
    return torch.tensor([int(chosen[i % len(chosen)]) for i in range(config.samples)], dtype=torch.long)


def step_grid(loaded: LoadedModel, steps: int) -> list[StepInfo]:
    """Every recorded evaluation of the model's scheduler at ``steps`` (two per step for Heun-type schedulers)."""
    return step_infos(loaded, steps)


def critical_from_file(path: Path | str) -> dict:
    """The time an analyze result JSON gives guide (``Critical.working_time``: critical.t where a transition was
    evidenced, else the decision time), its ci95, and the model it was measured on (``from_model``)."""
    from ..report.document import read_document

    result = AnalyzeView.from_document(read_document(path, role="`critical_from` file"))
    found = result.critical.working_time()
    if found is None:
        raise UserError(f"`critical_from` {path} has neither a critical time nor a decision time",
                        "analyze with more samples or steps, or give `at` a:b", option="critical_from")
    return _critical_entry(found, f"critical-from {path}", result.model.id)


def other_model_notes(critical: dict | None, model_id: str) -> list[str]:
    """A note when t_c comes from a result of another model (allowed: a base model's t_c for its fine-tune)."""
    measured_on = (critical or {}).get("from_model")
    if measured_on is None or _same_model(str(measured_on), model_id):
        return []
    return [f"t_c was measured on {measured_on}, not on {model_id} ({critical['source']}): used as given"]


def _same_model(a: str, b: str) -> bool:
    """Two model ids name one model: equal, or two spellings of one local folder."""
    if a == b:
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _critical_entry(found: WorkingTime, where: str, model_id: str) -> dict:
    """The guide document's ``critical``: t, ci95, where it came from (saying when it is a decision time: no
    transition evidenced) and the model it was measured on."""
    source = where if found.source == SOURCE_CRITICAL else \
        f"{where}: decision time (no transition evidenced beyond a Gaussian crossover)"
    return {"t": found.t, "ci95": list(found.ci95) if found.ci95 else None, "source": source, "from_model": model_id}


def measure_critical(model: Any, loaded: LoadedModel, config: GuideConfig, target: int,
                     load_options: LoadOptions | None, callback: Callback, cache: bool = True) -> dict:
    """t_c by ``analyze`` on the same loaded model (``load_guided_model``), conditioned on the target class, seeds
    disjoint from the guide samples; ``cache``: taken from the result cache where an analyze of the same weights and
    config is kept there (analysis/cache.py), else measured and kept."""
    from ..analysis.cache import SOURCE
    from ..analysis.engine import analyze

    seed = config.seed + config.samples  # guide uses seed .. seed + N - 1
    options = dict(steps=config.steps, samples=config.analyze_samples, seed=seed, class_label=target,
                   batch_size=config.batch_size, device=config.device, dtype=config.dtype, scheduler=config.scheduler,
                   prediction_type=config.prediction_type, bootstrap=min(ANALYZE_BOOTSTRAP, config.bootstrap))
    relabelled = with_class_label(loaded, target)
    result = analyze(model, callback=callback, load_options=load_options, loaded=relabelled, cache=cache,
                     reuse=cache, **options)
    found = Critical.from_document(result.critical).working_time()
    if found is None:
        raise UserError("analyze found neither a critical time nor a decision time for this model and class",
                        "give `critical_from` RESULT.json or an explicit window `at` a:b")
    where = f"analyze (class {target}, {config.analyze_samples} samples, seed {seed}, {config.steps} steps)"
    if result.cache_entry is not None:
        where = f"{SOURCE} {result.cache_entry}: {where}"
    return _critical_entry(found, where, result.document["model"]["id"])


@takes_held_models
def guide(model: Any, *, critical_from: str | Path | None = None, classifier: str | Path | None = None,
          label_map: dict[int, int] | str | None = None, keep_images: bool = False, callback: Callback | None = None,
          load_options: LoadOptions | None = None, cache: bool = True, **options: Any) -> GuideResult:
    """Sample every arm with the same seeds and classes, score class alignment, compare arms.

    ``options`` are the fields of ``GuideConfig`` (at, compare, guidance_scale, window_width, steps, samples, ...).
    ``cache``: a measured t_c comes from the result cache where an analyze of the same weights and config is kept
    there, and is kept there when measured (``measure_critical``); False: measured, not kept.
    ``model``: as ``analyze`` takes it (a pipeline or denoiser module you hold too, the module with ``scheduler=``).
    """
    started = time.perf_counter()
    callback = callback or ignore
    # 1. Cheap checks and loading: config, model, classes, classifier, step grid.
    config = make_guide_config(**options)
    names = [] if config.sweep else arm_names(config.at, config.compare)
    if isinstance(label_map, (str, Path)):
        label_map = alignment.parse_label_map(label_map)
    ranks = current(config.device)
    if config.samples < ranks.world:
        raise UserError(f"{config.samples} samples cannot be split over {ranks.world} processes",
                        "give at least one sample per process")
    with ranks.main_first():  # rank 0 downloads, the others read the cache
        loaded, guidance = load_guided_model(model, config, load_options)
    check_fits(sampling_bytes(-(-config.samples // ranks.world), math.prod(loaded.shape)),
               f"`samples` {config.samples}", "give fewer samples", option="samples")
    targets = target_classes(config, guidance)
    scorer = resolve_scorer(loaded, classifier, label_map)
    decode = latent_decoder(loaded, load_options) if scorer is not None or keep_images else None
    if scorer is not None:
        alignment.check_scorer(scorer, guidance.n_classes, targets.tolist(), image_shape(loaded, decode),
                               list(guidance.class_names) if guidance.class_names else None)
    t_grid = step_t_grid(step_grid(loaded, config.steps))  # (S,) per scheduler step
    # 2. The critical time, where an arm needs it or the user gave one.
    critical = None
    if critical_from is not None:
        critical = critical_from_file(critical_from)
    elif ARM_CRITICAL in names:
        critical = measure_critical(model, loaded, config, int(targets[0]), load_options, callback, cache)
    optional = RANDOM_ARMS if config.compare is None else ()  # default controls: left out where they cannot fit
    if config.sweep:
        arms = sweep_arms(t_grid, config.sweep, config.samples)
        names = [arm.name for arm in arms]
    else:
        arms = build_arms(names, config.samples, t_grid, critical["t"] if critical else None, config.window_width,
                          config.seed, optional)
    loaded_at = time.perf_counter()
    # 3. Sample every arm (paired: same seeds, same classes).
    samples, seconds = {}, {}
    for arm in arms:
        tick = time.perf_counter()
        mine, error = None, None
        try:
            mine = sample_arm(loaded, guidance, arm, targets, config.guidance_scale, config.steps, config.seed,
                              config.batch_size, callback, mine=ranks.split(config.samples), base=config.base)
        except ModelOutputError as err:  # NaN or Inf: every rank stops together
            error = err
        if ranks.any(error is not None):
            raise error or ModelOutputError(f"the model produced NaN or Inf in arm {arm.name} on another process")
        samples[arm.name] = ranks.all_rows(mine)  # every rank: all samples, in sample order
        seconds[arm.name] = time.perf_counter() - tick
    # 4. Decode and score.
    images = {name: decode_all(s, decode, config.batch_size) for name, s in samples.items()} \
        if scorer is not None or keep_images else None
    metrics = None
    if scorer is not None:
        index = scorer.index_of(targets.numpy())
        metrics = {name: alignment.logits_to_metrics(alignment.classify(scorer, images[name], config.batch_size), index)
                   for name in samples}
    # 5. The document.
    left_out = [name for name in names if name not in {arm.name for arm in arms}]
    document = build_document(loaded, guidance, config, arms, t_grid, critical, scorer, metrics, targets, left_out)
    document["environment"]["distributed"] = ranks.describe()
    document["timing"] = {"total_s": time.perf_counter() - started, "setup_s": loaded_at - started,
                          "arms_s": seconds,
                          "per_sample_s": sum(seconds.values()) / (len(arms) * config.samples)}
    return GuideResult(document, samples, images if keep_images else None, targets)


def build_document(loaded: LoadedModel, guidance: ClassGuidance, config: GuideConfig, arms: list[Arm],
                   t_grid: np.ndarray, critical: dict | None, scorer: alignment.Scorer | None,
                   metrics: dict[str, dict[str, np.ndarray]] | None, targets: torch.Tensor,
                   left_out: list[str] = ()) -> dict:
    from ..report.document import clean, environment, header

    t_range = (float(t_grid.min()), float(t_grid.max()))
    treatment = arms[0]
    width = None if config.sweep or treatment.name in (ARM_ALL, ARM_NONE) else float(np.diff(treatment.windows[0])[0])
    arm_blocks = []
    for arm in arms:
        steps = arm.guided_steps(t_grid)
        block = {"name": arm.name, "n": int(len(arm.windows)), "windows": arm.describe(t_range),
                 "guided_steps_mean": float(steps.mean()), "guided_steps_range": [int(steps.min()), int(steps.max())],
                 "metrics": (alignment.summarize_arm(metrics[arm.name], config.bootstrap, config.seed)
                             if metrics else {})}
        arm_blocks.append(block)
    comparisons = []
    if metrics and not config.sweep:
        for other in arms[1:]:
            for metric in alignment.METRIC_NAMES:
                comparisons.append({"arm": treatment.name, "versus": other.name, "metric": metric,
                                    **alignment.paired_comparison(metrics[treatment.name][metric],
                                                                  metrics[other.name][metric],
                                                                  config.bootstrap, config.seed,
                                                                  alignment.TESTS[metric])})
    critical_block = {"t": None, "ci95": None, "source": None}
    if critical is not None:
        critical_block = {**critical, "sigma": t_to_sigma(critical["t"]) if critical["t"] > 0 else 0.0}
    document = {
        **header("guide", config.to_dict(), model={**loaded.info, "guidance": guidance.describe()},
                 environment=environment(loaded.device, "none", config.dtype)),
        "critical": critical_block,
        "window_width_t": width,
        "guidance_scale": config.guidance_scale,
        "base": config.base,
        "sampled_t_range": list(t_range),
        "targets": {"classes": sorted(set(targets.tolist())), "per_sample": "classes cycled over samples"},
        "scored": metrics is not None,
        "metric_names": list(alignment.METRIC_NAMES) if metrics else [],
        "classifier": scorer.info if scorer is not None else None,
        "arms": arm_blocks,
        "comparisons": comparisons,
        "statistics": {"ci95": alignment.CI, "bootstrap": config.bootstrap, "tests": dict(alignment.TESTS),
                       "test": alignment.TEST, "permutations": alignment.PERMUTATIONS,
                       "effect_size": alignment.EFFECT_SIZE, "pairing": "same seeds and target classes in every arm"},
    }
    if config.sweep:
        document["sweep"] = sweep_block(arms, t_grid, metrics, config)
    document["notes"] = [f"default control {name} left out: it does not fit beside the treatment window "
                         "(a narrower `window_width` or more `steps` make room)" for name in left_out]
    document["notes"] += other_model_notes(critical, loaded.info["id"])
    if metrics is None:
        document["note"] = "no classifier: every arm was sampled, no alignment was scored"
    return clean(document)


def sweep_block(arms: list[Arm], t_grid: np.ndarray, metrics: dict[str, dict[str, np.ndarray]] | None,
                config: GuideConfig) -> dict:
    """The ``sweep`` block: per block of K steps its steps, t range, mean t and metrics (mean, ci95), the peak of
    ``target_prob`` with a bootstrap ci95 over samples (``alignment.bootstrap_peak``)."""
    blocks = sweep_blocks(len(t_grid), config.sweep)
    profile = []
    for a, b in blocks:
        name, t = block_arm_name((a, b)), t_grid[a: b + 1]
        profile.append({"steps": [a, b], "t": [float(t.min()), float(t.max())], "t_center": float(t.mean()),
                        "metrics": alignment.summarize_arm(metrics[name], config.bootstrap, config.seed)
                        if metrics else {}})
    block = {"block_steps": config.sweep, "base": config.base, "guidance_scale": config.guidance_scale,
             "profile": profile, "peak": None, "t_center": "mean t of the block's steps",
             "controls": "arms none and all: the same seeds and targets without and with the window's conditioning "
                         "at every step"}
    if metrics:
        metric = alignment.METRIC_TARGET_PROB
        per_block = np.stack([metrics[block_arm_name(ab)][metric] for ab in blocks])  # (K blocks, N)
        peak = alignment.bootstrap_peak(per_block, np.array([p["t_center"] for p in profile]), config.bootstrap,
                                        config.seed)
        block["peak"] = {"metric": metric, "t": peak["t"], "ci95": peak["ci95"], "share": peak["share"],
                         "steps": profile[peak["index"]]["steps"]}
    return block


# --------------------------------------------------------------------------------------------
# --suggest


@takes_held_models
def suggest(model: Any, *, critical_from: str | Path | None = None, save_guider: str | Path | None = None,
            callback: Callback | None = None, load_options: LoadOptions | None = None, cache: bool = True,
            **options: Any) -> dict:
    """The recommended guidance interval around t_c (width W in t): in t, sigma and step indices of the model's
    scheduler at ``steps``, with the evidence it came from, and the ``diffusers`` block that applies it
    (``diffcrit.diffusers``). With ``critical_from`` any model with a diffusers scheduler will do (its scheduler is
    read, no weights); measuring t_c needs a class-conditional model. ``save_guider``: a folder for the
    ``ClassifierFreeGuidance`` (``save_pretrained``); ``cache``: as ``guide``'s."""
    from ..diffusers import diffusers_block, save_guider as write_guider
    from ..report.document import clean, environment, header
    from ..sampling.steppers import schedule

    config = make_guide_config(**options)
    if critical_from is not None:  # 1. the evidence first: a bad file fails before anything is read
        critical = critical_from_file(critical_from)
        source = load_scheduler(model, part(config, ModelConfig), load_options)
        model_info, device = source.info, torch.device("cpu")
    else:
        loaded, guidance = load_guided_model(model, config, load_options)
        targets = target_classes(config, guidance)
        critical = measure_critical(model, loaded, config, int(targets[0]), load_options, callback or ignore,
                                    cache)
        source, device = loaded, loaded.device
        model_info = {**loaded.info, "guidance": guidance.describe()}
    plan = schedule(source.scheduler, config.steps, source.set_timesteps)
    infos, t_grid = plan.infos, step_t_grid(plan.infos)  # (S,) per scheduler step
    lo, hi = fixed_window(ARM_CRITICAL, critical["t"], config.window_width)
    check_window(ARM_CRITICAL, (lo, hi), t_grid)
    inside = [step for step, t in enumerate(t_grid) if lo <= t <= hi]  # scheduler steps, as guide pulses them
    t_lo, t_hi = max(lo, float(t_grid.min())), min(hi, float(t_grid.max()))
    ci = critical.get("ci95")
    notes = other_model_notes(critical, model_info["id"])
    if ci and ci[1] - ci[0] > config.window_width:
        notes.append(f"the ci95 of t_c ({ci[1] - ci[0]:.3g} wide) is wider than the window: the timing is uncertain")
    if (t_lo, t_hi) != (lo, hi):
        notes.append("the window was clipped to the sampled range")
    handoff = diffusers_block(plan.scheduler, plan.hidden, config.steps, inside[0], inside[-1], config.guidance_scale)
    if save_guider is not None:
        if handoff["guider"] is None:
            raise UserError(f"no guider can select this block: {handoff['note']}", "use a one-evaluation `scheduler`",
                            option="scheduler")
        write_guider(handoff["guider"]["config"], save_guider)
        handoff["guider"]["saved_to"] = str(save_guider)
    document = {
        **header("guide-suggestion", config.to_dict(), model=model_info,
                 environment=environment(device, "none", config.dtype), time_convention=False),
        "critical": {**critical, "sigma": t_to_sigma(critical["t"]) if critical["t"] > 0 else 0.0},
        "window_width_t": config.window_width,
        "interval": {
            "t": [t_lo, t_hi],
            "sigma": [t_to_sigma(t_lo) if t_lo > 0 else 0.0, t_to_sigma(t_hi)],
            "steps": [inside[0], inside[-1]], "step_count": len(inside),
            "timesteps": [info.timestep for info, step in zip(infos, scheduler_steps(infos), strict=True)
                          if step in inside],
            "scheduler": model_info.get("scheduler"), "num_inference_steps": config.steps,
        },
        "diffusers": handoff,
        "guidance_scale": config.guidance_scale,
        "rule": "window of width W in t = log(1 + sigma^2) centred on t_c; guide with scale S on the steps inside it, "
                "conditionally only elsewhere",
        "notes": notes,
    }
    return clean(document)

