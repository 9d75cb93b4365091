"""``reproduce``: run the claims of arXiv:2603.20092 as a battery of tests and return one document (docs/reproduce.md).

  1. the patch model (builtin:patch, p = 3, 5, 7) at y = 0: softening time and correlation-length jump against
     log(1 + C_Omega(0)) predicted from its training data;
  2. the negative control builtin:gaussian: no transition against its Gaussian null;
  3. each trained model (the built-ins digits and textures, or the ones given): transition evidence, and whether the
     markers coincide;
  4. with a classifier: the step-matched guidance sweep from the unconditional base, and the critical block against
     step-matched random blocks;
  5. with data (the built-ins': their training set): the speciation time log(1 + Lambda) against the measured
     decision and class-decision times.

Every claim records the diffcrit commands and the library settings that measured it. Drives the public entry points
only (``analyze``, ``guide``, ``analysis.predict``); nothing here prints, progress goes to ``callback``.
"""

from __future__ import annotations

import dataclasses
import shlex
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..errors import UserError
from ..models.builtins import PREFIX
from ..progress import Callback, ProgressEvent, ignore
from ..report.document import KIND_REPRODUCE, clean, header, validate_document, write_document
from . import claims as c
from .verdicts import VERDICTS

REPRODUCE = "reproduce"  # progress stage: claim groups done, of all groups
BUILTIN_MODELS = ("builtin:digits", "builtin:textures")
PATCH_SIDES = (3, 5, 7)
GAUSSIAN = "builtin:gaussian"
QUICK_NOTE = ("`quick`: smaller sample counts and fewer steps; every verdict is at reduced power (wider intervals: "
              "more inconclusive rows, and a refutation near a tolerance may not survive the full run)")


@dataclass(frozen=True)
class Settings:
    """Sample counts and steps of one battery (``QUICK`` or ``FULL``); ``patch_*`` for the y = 0 runs."""

    # y = 0 runs are deterministic; 200 steps space the probes near t_c below the jump resolution (analysis/jump.py)
    patch_steps: int = 200
    patch_samples: int = 8
    steps: int = 50
    samples: int = 128
    bootstrap: int = 200
    clones: int = 6  # branch steps for the class decision (with a classifier)
    guide_steps: int = 50
    guide_samples: int = 128
    sweep: int = 6  # steps per block of the guidance sweep
    guide_bootstrap: int = 1000
    window_width: float = 0.5  # the critical block, in t (at 1.0 no random block fits beside it on textures)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


FULL = Settings()
QUICK = Settings(patch_samples=4, steps=25, samples=32, bootstrap=100, clones=3, guide_steps=25, guide_samples=32,
                 sweep=4, guide_bootstrap=200)


def command_line(command: str, options: dict[str, Any]) -> str:
    """The diffcrit command line that runs ``options`` (library names, the model's first): ``--name-with-dashes
    value``."""
    words = ["diffcrit", command]
    for name, value in options.items():
        if value is None or value is False:
            continue
        flag = "--" + name.replace("_", "-")
        words += [flag] if value is True else [flag, ",".join(map(str, value)) if isinstance(value, list) else
                                                str(value)]
    return " ".join(shlex.quote(w) for w in words)


def _stem(model: str) -> str:
    """A short file-name stem for a model id: builtin:patch?p=5 -> patch-p5, a/b/folder -> folder."""
    if model.startswith(PREFIX):
        return model[len(PREFIX):].replace("?", "-").replace("=", "").replace("&", "-")
    return Path(model).name or "model"


class Runner:
    """Runs the library calls of one battery, keeping every analyze result in ``folder`` (guide reads t_c there);
    ``cache``: an analyze of the same weights and config kept in the result cache is read from it (analysis/cache.py),
    the models it was for listed in ``cached``; ``seed``: every run's first seed (another sample range)."""

    def __init__(self, settings: Settings, folder: Path, callback: Callback, load_options: Any, cache: bool = True,
                 seed: int = 0):
        self.settings, self.folder, self.callback, self.load_options = settings, folder, callback, load_options
        self.cache, self.cached = cache, []
        self.flags = {"offline": True} if getattr(load_options, "offline", False) else {}  # shown in the commands
        self.seeded = {"seed": seed} if seed else {}  # the default range: no --seed in the commands

    def analyze(self, model: str, **options: Any) -> tuple[dict, list[str], dict]:
        from ..analysis.engine import analyze

        options = {**options, **self.seeded}
        found = analyze(model, callback=self.callback, load_options=self.load_options, cache=self.cache,
                        reuse=self.cache, **options)
        if found.cache_entry is not None:
            self.cached.append(model)
        result = found.to_dict()
        out = self.folder / f"{_stem(model)}-analyze.json"
        write_document(result, out)
        return result, [command_line("analyze", {"model": model, **options, **self.flags, "out": out.name})], options

    def guide(self, model: str, **options: Any) -> tuple[dict, list[str], dict]:
        from ..guidance.engine import guide

        options = {**options, **self.seeded}
        result = guide(model, callback=self.callback, load_options=self.load_options, **options).to_dict()
        shown = {k: (Path(v).name if k == "critical_from" else v) for k, v in options.items()}
        return result, [command_line("guide", {"model": model, **shown, **self.flags})], shown

    def predict(self, data: str, **options: Any) -> tuple[dict, list[str], dict]:
        from ..analysis.predict import default_grid, predict
        from ..models.datasets import open_data

        source = open_data(data)
        body = predict(source, default_grid(source.shape), progress=self.callback, **options)
        return body, [command_line("predict", {"data": data, **options})], {"data": data, **options}


# --- the claim groups -------------------------------------------------------------------------------------------

def patch_claims(run: Runner, p: int) -> list[c.Claim]:
    model = f"builtin:patch?p={p}"
    prediction, predict_cmd, _ = run.predict(model, patch=p)
    predicted = prediction["patch"]["critical_t"]
    result, analyze_cmd, options = run.analyze(model, linearize_at="zero", steps=run.settings.patch_steps,
                                               samples=run.settings.patch_samples)
    commands, settings = predict_cmd + analyze_cmd, {"model": model, "analyze": options, "predict": {"patch": p}}
    return [c.patch_softening(p, result, predicted, commands, settings),
            c.patch_jump(p, result, predicted, commands, settings)]


def control_claims(run: Runner) -> list[c.Claim]:
    s = run.settings
    result, commands, options = run.analyze(GAUSSIAN, steps=s.steps, samples=s.samples, bootstrap=s.bootstrap)
    return [c.negative_control("gaussian", result, commands, {"model": GAUSSIAN, "analyze": options})]


def model_claims(run: Runner, model: str, classifier: str | None, data: str | None) -> list[c.Claim]:
    """Claims 3-5 on one trained model (docs/reproduce.md)."""
    s, name = run.settings, _stem(model)
    clones = dict(clones=s.clones, classifier=classifier) if classifier else {}
    result, analyze_cmd, options = run.analyze(model, steps=s.steps, samples=s.samples, bootstrap=s.bootstrap,
                                               **clones)
    settings = {"model": model, "analyze": options}
    out = [c.transition_evidence(name, result, analyze_cmd, settings), c.coincidence(name, result, analyze_cmd,
                                                                                      settings)]
    out += guidance_claims(run, model, name, classifier, result, analyze_cmd)
    out += speciation_claims(run, model, name, data, classifier, result, analyze_cmd, settings)
    return out


def guidance_claims(run: Runner, model: str, name: str, classifier: str | None, result: dict,
                    analyze_cmd: list[str]) -> list[c.Claim]:
    s, keys = run.settings, (c.GUIDANCE_PEAK, c.GUIDANCE_BLOCK)
    if classifier is None:
        return [c.unavailable(name, key, "no classifier (give `classifier`; class-conditional models only)")
                for key in keys]
    from ..guidance.pulses import ARM_CRITICAL, ARM_RANDOM_STEPS, BASE_UNCONDITIONAL
    from ..models.scorers import BUILTIN

    common = dict(base=BASE_UNCONDITIONAL, steps=s.guide_steps, samples=s.guide_samples, bootstrap=s.guide_bootstrap,
                  classifier=None if classifier == BUILTIN else classifier)  # guide scores with the shipped one
    try:
        sweep, sweep_cmd, sweep_opts = run.guide(model, sweep=s.sweep, **common)
        critical_file = str(run.folder / f"{name}-analyze.json")
        blocks, block_cmd, block_opts = run.guide(model, at=ARM_CRITICAL, compare=[ARM_RANDOM_STEPS],
                                                  window_width=s.window_width, critical_from=critical_file, **common)
    except UserError as err:
        return [c.unavailable(name, key, f"guide could not run: {err.message}", analyze_cmd) for key in keys]
    return [c.guidance_peak(name, sweep, result, analyze_cmd + sweep_cmd, {"model": model, "guide": sweep_opts}),
            c.guidance_block(name, blocks, analyze_cmd + block_cmd, {"model": model, "guide": block_opts})]


def speciation_claims(run: Runner, model: str, name: str, data: str | None, classifier: str | None, result: dict,
                      analyze_cmd: list[str], settings: dict) -> list[c.Claim]:
    keys = c.SPECIATION.values()
    if data is None:
        return [c.unavailable(name, key, "no data (give `data`, as predict reads it)") for key in keys]
    try:
        prediction, predict_cmd, predict_opts = run.predict(data)
    except UserError as err:
        return [c.unavailable(name, key, f"predict could not read the data: {err.message}", analyze_cmd)
                for key in keys]
    commands, settings = predict_cmd + analyze_cmd, {**settings, "predict": predict_opts}
    out = [c.speciation(name, prediction, result, c.DECISION, commands, settings)]
    if classifier is None:
        out.append(c.unavailable(name, c.SPECIATION[c.CLASS_DECISION], "no classifier: the class decision needs "
                                 "`classifier`", commands))
    else:
        out.append(c.speciation(name, prediction, result, c.CLASS_DECISION, commands, settings))
    return out


# --- the battery ------------------------------------------------------------------------------------------------

def plan(models: list[str] | None, classifier: str | None, data: str | None) -> list[tuple[str, Callable]]:
    """The claim groups in order: (label, function of a runner -> claims)."""
    from ..models.scorers import BUILTIN

    groups: list[tuple[str, Callable]] = [(f"patch p={p}", lambda run, p=p: patch_claims(run, p))
                                          for p in PATCH_SIDES]
    groups.append(("gaussian control", control_claims))
    for model in models or BUILTIN_MODELS:
        builtin = model in BUILTIN_MODELS
        scorer = BUILTIN if builtin and classifier is None else classifier
        source = model if builtin and data is None else data
        groups.append((_stem(model), lambda run, m=model, k=scorer, d=source: model_claims(run, m, k, d)))
    return groups


def reproduce(models: list[str] | None = None, *, quick: bool = False, classifier: str | None = None,
              data: str | None = None, callback: Callback | None = None, load_options: Any = None,
              settings: Settings | None = None, cache: bool = True, seed: int = 0) -> dict:
    """Run the battery; -> the ``reproduce`` document (validated against its shipped schema).

    ``models``: the trained models of claims 3-5 (default: the built-ins digits and textures, with their shipped
    classifier and training data); ``classifier``, ``data``: for the models given; ``settings``: overrides
    ``QUICK``/``FULL``; ``cache``: analyze results of the same weights and config are read from the result cache
    (analysis/cache.py; ``timing.cached`` lists their models) and new ones kept there; False: neither; ``seed``:
    the first seed of every analyze and guide run (0: the default ranges; another value, another sample range, so
    that verdicts can be compared over disjoint ranges).
    """
    started = time.perf_counter()
    callback = callback or ignore
    settings = settings or (QUICK if quick else FULL)
    groups = plan(models, classifier, data)
    rows: list[c.Claim] = []
    seconds: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="diffcrit-reproduce-") as folder:
        run = Runner(settings, Path(folder), callback, load_options, cache, seed)
        for i, (label, group) in enumerate(groups):
            callback(ProgressEvent(REPRODUCE, i, len(groups)))  # one bar; each group's runs show their own
            tick = time.perf_counter()
            rows += group(run)
            seconds[label] = time.perf_counter() - tick
        callback(ProgressEvent(REPRODUCE, len(groups), len(groups)))
    config = {"models": list(models or BUILTIN_MODELS), "quick": quick, "classifier": classifier, "data": data,
              "settings": settings.to_dict(), "patch_sides": list(PATCH_SIDES), "control": GAUSSIAN, "cache": cache,
              "seed": seed}
    return document(rows, config, quick, {"total_s": time.perf_counter() - started, "groups_s": seconds,
                                          "cached": run.cached})


def document(rows: list[c.Claim], config: dict, quick: bool, timing: dict) -> dict:
    """The JSON document (kind "reproduce", docs/reproduce.md), validated against its schema."""
    counts = {v: sum(r.verdict == v for r in rows) for v in VERDICTS}
    doc = clean({**header(KIND_REPRODUCE, config, time_convention=False),
                 "paper": "arXiv:2603.20092",
                 "power": "reduced" if quick else "full",
                 "power_note": QUICK_NOTE if quick else "full sample counts (docs/reproduce.md)",
                 "summary": counts,
                 "claims": [r.to_dict() for r in rows],
                 "timing": timing})
    validate_document(doc, KIND_REPRODUCE, "reproduce document")
    return doc


def check_reproduce_outputs(models: list[str] | None, classifier: str | None, data: str | None,
                            files: list[tuple[str, Path | None]]) -> None:
    """Every output (``files``: option name, path) checked before any work: none inside a model folder (the
    built-ins' included), the classifier or the data (``io.check_outputs``)."""
    from ..io import check_outputs
    from ..models.loading import model_source
    from ..models.scorers import classifier_path

    inputs = [("the model folder", model_source(m)) for m in models or BUILTIN_MODELS]
    inputs += [("`classifier`", classifier_path(classifier)),
               ("`data`", None if data is None or data.startswith(PREFIX) else Path(data).expanduser())]
    check_outputs(files=files, inputs=inputs)
