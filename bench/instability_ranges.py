"""The trained built-ins' instability fraction over disjoint sample ranges, and the shell gain's two estimators.

Part 1 (``--ranges R``): analyze at the defaults (128 samples, 16 probe trajectories, ``--shell-gain hutchinson``)
on R disjoint sample ranges (seed r * samples) of each model: per shell the largest instability fraction over the
probed steps with its Clopper–Pearson ci95, whether ``instability_onset`` was found, and the share of unstable
trajectories a probed step would have shown with 80% power (docs/design.md §5).

Part 2 (``--compare``): on range 0, the same steps probed (``--probe-schedule every``) with both shell gains. The
trajectories are the same (probing never touches the sampling generators), so at each probe point the difference of
the two per-point shell stiffnesses is the sign noise of the combination alone: its std against the spread of the
per-direction values over the points, and each step's |difference of means| over the combined s.e.m.

    python bench/instability_ranges.py --out bench/results/instability-trained.json      # ~20 min on 2 cores

Results are cached in --cache (one JSON per run), so a rerun only adds what is missing.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from _common import cached_analyze  # also: OMP_WAIT_POLICY=PASSIVE before torch loads

MODELS = ("builtin:textures", "builtin:digits")


def range_row(doc: dict) -> dict:
    block, onset = doc["instability"], doc["critical"]["markers"]["instability_onset"]
    return {"seed": doc["config"]["seed"], "probe_points": block["probe_points"], "probed_steps": block["probed_steps"],
            "peak_fraction": block["peak_fraction"], "peak_ci95": block["peak_ci95"], "peak_t": block["peak_t"],
            "onset_t": None if onset is None else onset["t"], "detectable_fraction": block["detectable_fraction"],
            "decision_shell": doc["critical"]["decision_shell"], "critical_found": doc["critical"]["found"],
            "min_point_stiffness": [float(np.min([s["point_stiffness"][p][n] for s in doc["steps"] if s["probed"]
                                                  for p in range(len(s["point_stiffness"]))]))
                                    for n in range(len(doc["shells"]))],
            "budget": doc["probe"]["budget"], "timing": doc["timing"]}


def compare(hutch: dict, direct: dict) -> dict:
    """Per shell: sign-noise std (per-point differences, same points), the per-direction between-point std, the
    s.e.m. of both shell means, and max over steps of |mean difference| / combined s.e.m."""
    steps = [i for i, s in enumerate(hutch["steps"]) if s["probed"]]
    ph = np.array([hutch["steps"][i]["point_stiffness"] for i in steps])  # (S, P, K)
    pd = np.array([direct["steps"][i]["point_stiffness"] for i in steps])
    mh, md = ph.mean(1), pd.mean(1)
    sem_h = np.array([hutch["steps"][i]["stiffness_sem"] for i in steps])
    sem_d = np.array([direct["steps"][i]["stiffness_sem"] for i in steps])
    points = ph.shape[1]
    sem_dp = pd.std(1, ddof=1) / np.sqrt(points)  # s.e.m. over points of the per-point shell means (directions)
    combined = np.sqrt(sem_h**2 + sem_dp**2)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(combined > 0, np.abs(mh - md) / combined, 0.0)
    return {"steps": [hutch["steps"][i]["index"] for i in steps], "t": [hutch["steps"][i]["t"] for i in steps],
            "points": points,
            "sign_noise_std": (ph - pd).std(axis=(0, 1), ddof=1).tolist(),
            "between_points_std": pd.std(1, ddof=1).mean(0).tolist(),
            "sem_hutchinson_median": np.median(sem_h, 0).tolist(),
            "sem_directions_points_median": np.median(sem_dp, 0).tolist(),
            "sem_directions_reported_median": np.median(sem_d, 0).tolist(),
            "max_abs_difference": np.abs(mh - md).max(0).tolist(),
            "max_z": z.max(0).tolist(), "share_within_1_sem": (z <= 1).mean(0).tolist(),
            "share_within_2_sem": (z <= 2).mean(0).tolist(),
            "forwards": {"hutchinson": hutch["probe"]["budget"]["probing_forwards"],
                         "directions": direct["probe"]["budget"]["probing_forwards"]},
            "probing_s": {"hutchinson": hutch["timing"]["probing_s"], "directions": direct["timing"]["probing_s"]}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--ranges", type=int, default=6)
    parser.add_argument("--samples", type=int, default=128)
    parser.add_argument("--compare", action="store_true", help="also part 2 (both shell gains on range 0)")
    parser.add_argument("--compare-every", type=int, default=5)
    parser.add_argument("--cache", type=Path, default=Path("bench/results/cache-instability"))
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    out: dict = {"samples": args.samples, "ranges": {}, "compare": {}}
    for model in args.models:
        rows = []
        for r in range(args.ranges):
            rows.append(range_row(cached_analyze(args.cache, model, seed=r * args.samples, samples=args.samples)))
            print(model, json.dumps({k: rows[-1][k] for k in ("seed", "peak_fraction", "onset_t",
                                                               "detectable_fraction", "min_point_stiffness")}),
                  flush=True)
        out["ranges"][model] = rows
        if args.compare:
            options = dict(seed=0, samples=args.samples, probe_schedule="every", probe_every=args.compare_every)
            docs = {mode: cached_analyze(args.cache, model, shell_gain=mode, **options)
                    for mode in ("hutchinson", "directions")}
            out["compare"][model] = compare(docs["hutchinson"], docs["directions"])
            print(model, json.dumps(out["compare"][model]), flush=True)
    if args.out:
        args.out.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
