"""``python -m diffcrit.training measure NAME``: the critical time diffcrit measures on a built-in.

Runs ``diffcrit.analyze`` on the shipped folder with the default options (null class, i.e. the
unconditional model) for a few seeds, stores the outcome in train_config.json["critical_time"] and
rewrites MODEL_CARD.md from it. Nothing is tuned: the options are the analyze defaults.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Callable

SEEDS = (0, 1, 2)


def _run_summary(document: dict) -> dict:
    critical = document["critical"]
    markers = {name: (None if m is None else round(m["t"], 4)) for name, m in critical["markers"].items()}
    return {"seed": document["config"]["seed"], "found": critical["found"], "t": critical["t"],
            "sigma": critical["sigma"], "ci95": critical["ci95"], "markers": markers,
            "probe_method": document["environment"]["probe_method"], "seconds": round(document["timing"]["total_s"], 1)}


def measure_builtin(name: str, out: Path | None = None, seeds: tuple[int, ...] = SEEDS,
                    log: Callable[[str], None] = lambda s: print(s, file=sys.stderr)) -> dict:
    import diffcrit

    from .train import default_out, write_card

    out = Path(out) if out is not None else default_out(name)
    runs = []
    for seed in seeds:
        document = diffcrit.analyze(f"builtin:{name}", seed=seed).to_dict()
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
