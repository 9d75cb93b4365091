"""What diffcrit measures on a built-in, recorded in its train_config.json and card.

``python -m diffcrit.training measure NAME``: the critical time. Runs ``diffcrit.analyze`` on the
folder with the default options (null class, i.e. the unconditional model) for a few seeds,
stores the outcome in train_config.json["critical_time"] and rewrites MODEL_CARD.md from it.
Nothing is tuned: the options are the analyze defaults.

``python -m diffcrit.training consistency NAME``: the total-variance check of docs/design.md §5. The
decided fraction of shell n at step j is f_n(j) = S_D,n(j) / S_x0,n, S the connected structure
factor over samples averaged over the shell's FFT bins and the channels, D = D(y) at step j and
x0 the final samples. A consistent denoiser has f_n <= 1 at every step (law of total variance);
the check records max_j f_n(j) per shell for each step count in ``CONSISTENCY_STEPS`` and each
seed in ``CONSISTENCY_SEEDS`` (disjoint sample ranges), in train_config.json["decided_fraction"].
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Callable

import numpy as np

# Disjoint sample ranges of the analyze default size (64): seed S covers samples S..S+63.
SEEDS = (0, 64, 128)

# Total-variance check: sample count, step counts (50 = the analyze default), seeds (sample ranges
# 0-63 and 64-127), the shells checked and the largest decided fraction accepted on them.
CONSISTENCY_SAMPLES = 64
CONSISTENCY_STEPS = (25, 50, 100)
CONSISTENCY_SEEDS = (0, 64)
CONSISTENCY_SHELLS = 4
DECIDED_FRACTION_LIMIT = 1.25


def _run_summary(document: dict) -> dict:
    critical = document["critical"]
    markers = {name: (None if m is None else round(m["t"], 4)) for name, m in critical["markers"].items()}
    return {"seed": document["config"]["seed"], "samples": document["config"]["samples"],
            "primary": critical.get("primary"), "found": critical["found"], "t": critical["t"],
            "sigma": critical["sigma"], "ci95": critical["ci95"], "markers": markers,
            "probe_method": document["environment"]["probe_method"], "seconds": round(document["timing"]["total_s"], 1)}


def measure_builtin(name: str, out: Path | None = None, seeds: tuple[int, ...] = SEEDS,
                    log: Callable[[str], None] = lambda s: print(s, file=sys.stderr)) -> dict:
    import diffcrit

    from . import CHECKPOINTS
    from .train import default_out, write_card

    # The shipped folder through its builtin: id; another folder as a pipeline folder, null class.
    model, options = f"builtin:{name}", {}
    if out is not None:
        model, options = str(out), {"class_label": CHECKPOINTS[name]["null_class"]}
    out = Path(out) if out is not None else default_out(name)
    runs = []
    for seed in seeds:
        document = diffcrit.analyze(model, seed=seed, **options).to_dict()
        runs.append(_run_summary(document))
        log(f"{name} seed {seed}: t_c = {runs[-1]['t']} ci95 = {runs[-1]['ci95']} markers = {runs[-1]['markers']}")
    config = {k: v for k, v in document["config"].items() if k != "seed"}
    cfg = json.loads((out / "train_config.json").read_text())
    cfg["critical_time"] = {"command": f"diffcrit analyze --model builtin:{name} --seed SEED", "analyze_config": config,
                      "conditioning": document["model"]["conditioning"], "runs": runs,
                      "diffcrit_version": document["diffcrit_version"]}
    (out / "train_config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    write_card(name, out)
    return cfg["critical_time"]


# --- Total-variance consistency (docs/design.md §5).


def consistency_run(folder: Path, class_label: int, steps: int, seed: int,
                    samples: int = CONSISTENCY_SAMPLES, n_shells: int = CONSISTENCY_SHELLS) -> dict:
    """One analyze run of a pipeline folder (defaults but steps, seed, samples, class_label;
    probing cut to one direction at two steps, which leaves the trajectories unchanged) ->
    per-shell max_j f_n(j), the step and sigma where it is reached, and f_n at the first step."""
    import diffcrit

    result = diffcrit.analyze(str(folder), steps=steps, seed=seed, samples=samples,
                              shells=n_shells, class_label=class_label, directions=1,
                              probe_samples=1, probe_schedule="every", probe_every=steps,
                              bootstrap=0)
    records = result.to_dict()["steps"]
    f = np.array([[np.nan if v is None else v for v in r["decided"]] for r in records])  # (steps, K)
    worst = f.argmax(0)
    return {"steps": steps, "seed": seed, "samples": samples,
            "max": [round(float(v), 4) for v in f.max(0)],
            "at_step": [int(j) for j in worst],
            "at_sigma": [round(float(records[j]["sigma"]), 3) for j in worst],
            "first_step": [round(float(v), 4) for v in f[0]],
            "first_sigma": round(float(records[0]["sigma"]), 3)}


def measure_consistency(name: str, out: Path | None = None, baseline: Path | None = None,
                        log: Callable[[str], None] = lambda s: print(s, file=sys.stderr)) -> dict:
    """Every (steps, seed) of the check on the folder; stored as train_config.json
    ["decided_fraction"] (with ``baseline``'s block, if given, as "baseline") and the card rewritten."""
    from .train import default_out, write_card

    out = Path(out) if out is not None else default_out(name)
    cfg = json.loads((out / "train_config.json").read_text())
    runs = []
    for steps in CONSISTENCY_STEPS:
        for seed in CONSISTENCY_SEEDS:
            runs.append(consistency_run(out, cfg["null_class"], steps, seed))
            log(f"{name} steps {steps} seed {seed}: max decided fraction per shell "
                + " ".join(f"{v:.3f}" for v in runs[-1]["max"])
                + f" (first step, sigma {runs[-1]['first_sigma']:.1f}: "
                + " ".join(f"{v:.3f}" for v in runs[-1]["first_step"]) + ")")
    block = {"command": f"python -m diffcrit.training consistency {name}",
             "prediction_type": cfg["scheduler"]["prediction_type"], "limit": DECIDED_FRACTION_LIMIT,
             "conditioning": f"null class {cfg['null_class']}, the analyze default", "runs": runs,
             "max": [max(r["max"][n] for r in runs) for n in range(CONSISTENCY_SHELLS)]}
    if baseline is not None:
        block["baseline"] = json.loads((Path(baseline) / "train_config.json").read_text())[
            "decided_fraction"]
        block["baseline"].pop("baseline", None)
    elif "baseline" in cfg.get("decided_fraction", {}):
        block["baseline"] = cfg["decided_fraction"]["baseline"]
    cfg["decided_fraction"] = block
    (out / "train_config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    write_card(name, out)
    return block
