"""Coverage of the two class-decision markers over disjoint sample ranges, on the exact two-point mixture, and their
negative control (docs/design.md §6b).

Positive: ``analyze builtin:mixture?size=8 --clones G --classifier sign.pt`` where the sign of the sample mean is the
class. Both markers, ``class_decision`` (clone pairs) and ``class_decision_fb`` (forward–backward), estimate the DC
mode's decision time log(1 + |m|^2 / a_half) exactly (tests/test_forward_backward.py says why). Per range (seed
r * samples): the marker's t, its ci95 and whether the ci95 holds the exact time.

Negative: the same runs scored by a classifier that ignores the image (uniform random logits): agreement sits at
chance at every branch step, so neither marker may be found; a found marker is a false decision.

    python bench/class_decision_coverage.py --ranges 8 --samples 256 --out bench/results/class-decision-coverage.json

Runs are kept in --cache (one JSON each), so a rerun only adds what is missing.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import torch

from _common import cached_analyze  # also: OMP_WAIT_POLICY=PASSIVE before torch loads

MODEL = "builtin:mixture?size=8"
MARKERS = ("class_decision", "class_decision_fb")


class SignClassifier(torch.nn.Module):
    """Class 1 where the sample mean is positive: the mixture's class, read from its DC mode."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.flatten(1).mean(1)
        return torch.stack([-mean, mean], 1)


class BlindClassifier(torch.nn.Module):
    """Two classes drawn afresh for every image, whatever it shows: no decision to find."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.rand(x.shape[0], 2)


def exact_time(model: str) -> float:
    from diffcrit.models.builtins import make_analytic

    return make_analytic(model).decision_t


def range_row(doc: dict, exact: float) -> dict:
    row = {"seed": doc["config"]["seed"]}
    for name in MARKERS:
        marker = doc["critical"]["markers"].get(name)
        found = marker is not None and marker.get("t") is not None
        ci = marker.get("ci95") if found else None
        row[name] = {"t": marker["t"] if found else None, "ci95": ci,
                     "covers": bool(ci is not None and ci[0] <= exact <= ci[1])}
    return row


def summary(rows: list[dict]) -> dict:
    out = {}
    for name in MARKERS:
        found = [r[name] for r in rows if r[name]["t"] is not None]
        out[name] = {"found": len(found), "ranges": len(rows), "covers": sum(r["covers"] for r in found),
                     "t_mean": float(np.mean([r["t"] for r in found])) if found else None,
                     "t_std": float(np.std([r["t"] for r in found])) if found else None,
                     "ci_width_mean": float(np.mean([r["ci95"][1] - r["ci95"][0] for r in found if r["ci95"]]))
                     if found else None}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=MODEL)
    parser.add_argument("--ranges", type=int, default=8)
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--clones", type=int, default=8)
    parser.add_argument("--bootstrap", type=int, default=200)
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "diffcrit-class-decision")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    exact = exact_time(args.model)
    report = {"model": args.model, "exact_t": exact, "samples": args.samples, "steps": args.steps,
              "clones": args.clones, "bootstrap": args.bootstrap}
    for kind, module in (("positive", SignClassifier()), ("negative", BlindClassifier())):
        classifier = args.cache / f"{kind}.pt"
        torch.jit.save(torch.jit.script(module), str(classifier))
        rows = []
        for r in range(args.ranges):
            doc = cached_analyze(args.cache, args.model, steps=args.steps, samples=args.samples,
                                 seed=r * args.samples, clones=args.clones, classifier=str(classifier),
                                 bootstrap=args.bootstrap, probe_samples=1, directions=1)
            rows.append(range_row(doc, exact))
            print(kind, r, {name: rows[-1][name] for name in MARKERS}, flush=True)
        report[kind] = {"ranges": rows, "summary": summary(rows)}
        print(kind, json.dumps(report[kind]["summary"]), flush=True)
    if args.out is not None:
        args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
