"""Null distribution of `diffcrit check` over disjoint reseeds, its false-alarm rate and its power.

For each model: `--ranges` analyses at the analyze defaults on disjoint sample ranges
(seed r * samples, r = 0..R-1), every pair compared with `checking.compare_results` (independent
comparisons). Printed per model: the critical time of each range (found, t, ci95, whether it covers the
median), its spread, the largest difference each check saw between two reseeds (the null), and how many
pairs the default tolerances flag (false alarms). Then the power: the two-point mixture with |m|^2 = 12
against 16 along trajectories (256 samples each, disjoint ranges) must be flagged, the same mixture
reseeded must pass. Step-count agreement: 25 / 50 / 100 steps on one range.

    python bench/calibrate_check.py --out bench/results/calibration.json      # ~15 min on 2 CPU cores
    python bench/calibrate_check.py --models builtin:textures --ranges 6

Results are cached in --cache (one JSON per run), so a rerun only adds what is missing.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
from pathlib import Path

from _common import cached_analyze  # also: OMP_WAIT_POLICY=PASSIVE before torch loads
from diffcrit.release.checking import STATUS_FAIL, Tolerances, compare_results  # noqa: E402
from diffcrit.config import AnalyzeConfig  # noqa: E402


def null_statistics(docs: list[dict], tolerances: Tolerances) -> dict:
    """Largest |measured| per check over all pairs, and the pairs the tolerances flag."""
    largest: dict[str, float] = {}
    flagged = []
    for (i, a), (j, b) in itertools.combinations(enumerate(docs), 2):
        for outcome in compare_results(a, b, tolerances):
            if outcome.measured is not None:
                largest[outcome.name] = max(largest.get(outcome.name, 0.0), abs(outcome.measured))
            if outcome.status == STATUS_FAIL:
                flagged.append(f"{i}-{j}: {outcome.name} ({outcome.detail})")
    pairs = len(docs) * (len(docs) - 1) // 2
    return {"pairs": pairs, "largest": largest, "false_alarms": flagged,
            "pairs_flagged": len({f.split(':')[0] for f in flagged})}


def stability(docs: list[dict]) -> dict:
    ts = [d["critical"]["t"] for d in docs if d["critical"]["found"]]
    median = statistics.median(ts) if ts else None
    cover = sum(1 for d in docs
                if d["critical"]["ci95"] and d["critical"]["ci95"][0] <= median <= d["critical"]["ci95"][1])
    return {"found": f"{len(ts)}/{len(docs)}", "t": [d["critical"]["t"] for d in docs],
            "ci95": [d["critical"]["ci95"] for d in docs], "median": median,
            "std": statistics.stdev(ts) if len(ts) > 1 else None, "ci95_covering_median": f"{cover}/{len(docs)}",
            "primary": docs[0]["critical"]["primary"], "decision_shell": docs[0]["critical"]["decision_shell"],
            "inconsistent_steps": [d["diagnostics"]["total_variance"]["inconsistent_steps"] for d in docs]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["builtin:textures", "builtin:digits"])
    parser.add_argument("--ranges", type=int, default=6)
    parser.add_argument("--samples", type=int, default=AnalyzeConfig().samples)
    parser.add_argument("--cache", type=Path, default=Path("bench/results/calibration-runs"))
    parser.add_argument("--out", type=Path)
    parser.add_argument("--skip-power", action="store_true")
    args = parser.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    tolerances = Tolerances()
    report: dict = {"tolerances": tolerances.to_dict(), "models": {}}
    for model in args.models:
        docs = [cached_analyze(args.cache, model, seed=r * args.samples, samples=args.samples)
                for r in range(args.ranges)]
        steps = {n: cached_analyze(args.cache, model, seed=0, samples=args.samples, steps=n)["critical"]["t"]
                 for n in (25, 100)}
        steps[50] = docs[0]["critical"]["t"]
        entry = {"stability": stability(docs), "null": null_statistics(docs, tolerances), "steps_t": steps}
        report["models"][model] = entry
        print(json.dumps({model: entry}, indent=1))
    if not args.skip_power:
        mixture = dict(samples=256, probe_samples=16)
        m16 = cached_analyze(args.cache, "builtin:mixture?m2=16", seed=0, **mixture)
        m16b = cached_analyze(args.cache, "builtin:mixture?m2=16", seed=256, **mixture)
        m12 = cached_analyze(args.cache, "builtin:mixture?m2=12", seed=0, **mixture)
        m12b = cached_analyze(args.cache, "builtin:mixture?m2=12", seed=256, **mixture)
        power = {name: [f"{o.name} ({o.measured:+.3f} vs {o.tolerance:.3f})"
                        for o in compare_results(cand, m16, tolerances) if o.status == STATUS_FAIL]
                 for name, cand in (("m2=12 vs 16, paired (same seeds)", m12), ("m2=12 vs 16, independent", m12b),
                                    ("m2=16 reseeded (independent)", m16b))}
        power["t"] = {"m2=16": m16["critical"]["t"], "m2=16 reseeded": m16b["critical"]["t"],
                      "m2=12": m12["critical"]["t"], "m2=12 reseeded": m12b["critical"]["t"]}
        report["power"] = power
        print(json.dumps({"power": power}, indent=1))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
