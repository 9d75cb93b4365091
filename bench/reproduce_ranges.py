"""The verdicts of ``diffcrit reproduce`` over disjoint sample ranges: which claims keep their verdict when only the
seeds change (docs/reproduce.md, "Verdicts over disjoint ranges"). No claim may be confirmed in one range and
refuted in another: that would mean intervals narrower than the spread between ranges.

Range r runs the battery with ``seed = r * 10000`` (every analyze and guide run of the battery starts there; the
battery's largest run draws 128 samples, so the ranges share no seed). Per claim: the verdict in each range and the
measured value's spread; a claim whose verdict changes between ranges is decided by sampling noise at these settings.

    python bench/reproduce_ranges.py --ranges 4 --quick --out bench/results/reproduce-quick-ranges.json

Each range's document is kept in --cache (seed<S>.json), so a rerun only adds what is missing.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

import _common  # noqa: F401  (OMP_WAIT_POLICY=PASSIVE before torch loads)

SPACING = 10_000  # seeds between ranges: more than any run of the battery draws


def run_range(seed: int, quick: bool, cache: Path) -> dict:
    path = cache / f"seed{seed}.json"
    if not path.exists():
        import diffcrit

        document = diffcrit.reproduce(quick=quick, seed=seed, cache=False)
        path.write_text(json.dumps(document))
    return json.loads(path.read_text())


def by_claim(documents: list[dict]) -> dict[str, dict]:
    """Per claim id: its verdict and measured value in every range, and whether the verdict held."""
    out: dict[str, dict] = {}
    for document in documents:
        for claim in document["claims"]:
            row = out.setdefault(claim["id"], {"verdicts": [], "measured": []})
            row["verdicts"].append(claim["verdict"])
            row["measured"].append(claim["measured"])
    for row in out.values():
        row["stable"] = len(set(row["verdicts"])) == 1
        row["opposite"] = {"confirmed", "refuted"} <= set(row["verdicts"])  # one range confirms, another refutes
        numbers = [m for m in row["measured"] if isinstance(m, (int, float))]
        row["measured_spread"] = float(np.ptp(numbers)) if len(numbers) > 1 else None
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranges", type=int, default=4)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "diffcrit-reproduce-ranges")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    documents = [run_range(r * SPACING, args.quick, args.cache) for r in range(args.ranges)]
    claims = by_claim(documents)
    for claim_id, row in claims.items():
        print(f"{claim_id:40s} {' '.join(v[:4] for v in row['verdicts'])}  {'stable' if row['stable'] else 'CHANGES'}"
              f"  spread {row['measured_spread']}")
    stable, opposite = (sum(row[key] for row in claims.values()) for key in ("stable", "opposite"))
    print(f"{stable} of {len(claims)} claims keep their verdict over {args.ranges} ranges; {opposite} confirmed in "
          "one range and refuted in another")
    if args.out is not None:
        report = {"quick": args.quick, "ranges": args.ranges, "seeds": [r * SPACING for r in range(args.ranges)],
                  "summary": [d["summary"] for d in documents], "claims": claims, "stable": stable,
                  "opposite": opposite}
        args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
