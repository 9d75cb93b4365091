"""``python -m diffcrit.training train NAME [--steps N] [--out DIR]``: rebuild a built-in folder.

``python -m diffcrit.training evaluate NAME [--out DIR]``: from the trained folder, redo the
sample checks, samples.png and MODEL_CARD.md (no training).

``python -m diffcrit.training measure NAME [--out DIR]``: run ``diffcrit analyze`` on the folder
(default options, seeds 0-2) and put the measured critical time into the card.

``python -m diffcrit.training consistency NAME [--out DIR] [--baseline DIR]``: the decided
fraction of shells 0-3 at every step (docs/design.md §5; at most 1 for a consistent denoiser) at 25,
50 and 100 steps, two seeds, into the card; ``--baseline`` adds another folder's recorded check
(e.g. the previous checkpoint) for comparison.

Progress on stderr; exit 2 with one line for a bad name or option.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import CHECKPOINTS


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m diffcrit.training",
                                     description="Train the built-in diffcrit checkpoints.")
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train NAME and write its folder (seeded)")
    train.add_argument("name", choices=sorted(CHECKPOINTS))
    train.add_argument("--steps", type=int, default=None,
                       help="diffusion training steps (default: the recipe's)")
    train.add_argument("--out", type=Path, default=None,
                       help="output folder (default: diffcrit/models/builtins/checkpoints/NAME)")
    evaluate = sub.add_parser("evaluate", help="redo samples, sample accuracy and the card")
    evaluate.add_argument("name", choices=sorted(CHECKPOINTS))
    evaluate.add_argument("--out", type=Path, default=None, help="the folder (default: shipped)")
    measure = sub.add_parser("measure", help="measure the critical time and put it into the card")
    measure.add_argument("name", choices=sorted(CHECKPOINTS))
    measure.add_argument("--out", type=Path, default=None, help="the folder (default: shipped)")
    consistency = sub.add_parser("consistency",
                                 help="measure the decided fraction (docs/design.md §5) into the card")
    consistency.add_argument("name", choices=sorted(CHECKPOINTS))
    consistency.add_argument("--out", type=Path, default=None,
                             help="the folder (default: shipped)")
    consistency.add_argument("--baseline", type=Path, default=None,
                             help="a folder whose recorded check is shown for comparison")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    if args.command == "measure":
        from .measure import measure_builtin

        measure_builtin(args.name, out=args.out)
        return 0
    if args.command == "consistency":
        from .measure import measure_consistency

        measure_consistency(args.name, out=args.out, baseline=args.baseline)
        return 0
    if args.command == "evaluate":
        from .train import evaluate_builtin

        evaluate_builtin(args.name, out=args.out)
        return 0
    if args.steps is not None and args.steps < 1:
        print(f"error: --steps must be >= 1, got {args.steps}", file=sys.stderr)
        return 2
    from .train import train_builtin

    train_builtin(args.name, out=args.out, steps=args.steps)
    return 0


if __name__ == "__main__":
    sys.exit(main())
