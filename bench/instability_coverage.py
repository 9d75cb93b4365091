"""Coverage of the instability fraction's intervals over disjoint sample ranges, on the exact two-point mixture, and
its negative control (docs/design.md §5).

On ``builtin:mixture?size=8`` (x0 = ±m, |m|^2 = m2) the DC mode's stiffness at a state y is exact:
s(y) = 1 - a sech^2(u), a = m2 / sigma^2, u = <y, m> / sigma^2, and along the exact marginal u ~ a + sqrt(a) z
(either class: s is even in u), so the share of unstable trajectories at sigma is exact
(``analytic.mixture_unstable_share``).

Per range (seed r * samples, every sample probed, every step probed): at each probed step the count of unstable
probe trajectories, whether the document's per-step interval (``unstable_fraction_ci95``) holds p(sigma), and whether
the Clopper–Pearson interval of that count would. The negative control, a Gaussian field (its D is linear with gain
below 1, so s > 0 everywhere), may show no unstable trajectory at all.

    python bench/instability_coverage.py --ranges 12 --samples 32 --out bench/results/instability-coverage.json

Runs are kept in --cache (one JSON each), so a rerun only adds what is missing.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from scipy.stats import binomtest

from _common import cached_analyze  # also: OMP_WAIT_POLICY=PASSIVE before torch loads

from diffcrit.models.builtins.analytic import mixture_unstable_share  # noqa: E402

MODEL = "builtin:mixture?size=8"
GAUSSIAN = "builtin:gaussian?size=8"


def step_rows(doc: dict, m2: float | None) -> list[dict]:
    """Per probed step: sigma, the DC count of unstable trajectories, the exact share, and whether each interval
    holds it (m2 None: the Gaussian control, exact share 0)."""
    points, depth = doc["instability"]["probe_points"], doc["instability"]["depth"]
    rows = []
    for step in doc["steps"]:
        if not step["probed"]:
            continue
        count = int(round(step["unstable_fraction"][0] * points))
        exact = 0.0 if m2 is None else mixture_unstable_share(m2 / step["sigma"] ** 2, depth)
        band = step["unstable_fraction_ci95"][0] if step["unstable_fraction_ci95"] else None
        cp = binomtest(count, points).proportion_ci(0.95, method="exact")
        rows.append({"step": step["index"], "t": step["t"], "sigma": step["sigma"], "count": count, "exact": exact,
                     "band": band, "band_covers": bool(band is not None and band[0] <= exact <= band[1]),
                     "cp": [cp.low, cp.high], "cp_covers": bool(cp.low <= exact <= cp.high)})
    return rows


def summary(rows: list[dict]) -> dict:
    """Coverage over all (range, step) pairs, and over those whose exact share is at least 1e-6 and 0.01."""
    out = {"pairs": len(rows), "band_covers": sum(r["band_covers"] for r in rows),
           "cp_covers": sum(r["cp_covers"] for r in rows), "steps_with_unstable": sum(r["count"] > 0 for r in rows)}
    for floor in (1e-6, 0.01):
        chosen = [r for r in rows if r["exact"] >= floor]
        out[f"share_from_{floor:g}"] = {"pairs": len(chosen), "band_covers": sum(r["band_covers"] for r in chosen),
                                        "cp_covers": sum(r["cp_covers"] for r in chosen)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranges", type=int, default=12)
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--probe-every", type=int, default=2)
    parser.add_argument("--bootstrap", type=int, default=200)
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "diffcrit-instability")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    from diffcrit.models.builtins import make_analytic

    m2 = make_analytic(MODEL).m2
    report = {"model": MODEL, "m2": m2, "samples": args.samples, "steps": args.steps, "bootstrap": args.bootstrap}
    for name, model, exact_m2 in (("mixture", MODEL, m2), ("gaussian", GAUSSIAN, None)):
        rows = []
        for r in range(args.ranges):
            doc = cached_analyze(args.cache, model, steps=args.steps, samples=args.samples, seed=r * args.samples,
                                 probe_samples=args.samples, probe_schedule="every", probe_every=args.probe_every,
                                 directions=1, bootstrap=args.bootstrap)
            mine = step_rows(doc, exact_m2)
            rows.extend({"range": r, **row} for row in mine)
            print(name, r, json.dumps(summary(mine)), flush=True)
        report[name] = {"steps": rows, "summary": summary(rows)}
        print(name, json.dumps(report[name]["summary"]), flush=True)
    if args.out is not None:
        args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
