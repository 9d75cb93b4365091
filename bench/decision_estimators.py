"""Estimators of the decision crossing compared over disjoint sample ranges (docs/design.md §6, "Choosing").

For each range of ``--samples`` (seed r * samples), the per-sample Fourier coefficients of D(y) and of the final
samples at the low bins are recorded once (cached in --cache as .npz), then the crossing of 1/2 (isotonic fit,
detection.decision) is read off three estimators of the decided fraction per shell:
  var  Var D(y) / Var x0          (what analyze reports: a property of D alone)
  cov  Cov(D(y), x0) / Var x0     (sampler-dependent: sqrt(P/(P+sigma^2)) for a Gaussian field along an ODE)
  mse  1 - E|x0 - D(y)|^2 / Var x0 (sampler-dependent likewise)
and the pooled var over shells 1-2, printed with their spread over the ranges.

    python bench/decision_estimators.py --model builtin:digits --samples 64 --ranges 12 --cache /tmp/dexp
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402

from diffcrit.analysis import detection  # noqa: E402
from diffcrit.analysis.engine import run  # noqa: E402
from diffcrit.config import make_config  # noqa: E402
from diffcrit.models.loading import load_model  # noqa: E402
from diffcrit.spectral.fourier import plane_wave_directions  # noqa: E402
from diffcrit.progress import ignore  # noqa: E402


def coefficients(model: str, samples: int, steps: int, seed: int, cache: Path) -> dict:
    """The run's per-sample coefficients of D(y) (S, N, C, Q), x0 (N, C, Q), t (S,), bin shells (Q,)."""
    path = cache / f"{model.split(':')[-1]}_n{samples}_s{steps}_seed{seed}.npz"
    if not path.exists():
        config = make_config(steps=steps, samples=samples, seed=seed, directions=1, probe_schedule="every",
                             probe_every=10_000)
        loaded = load_model(model, config, config)
        records, _ = run(loaded, config, plane_wave_directions(loaded.shape, config.shells, 1), None, ignore)
        np.savez(path, den=np.stack(list(records.coef_denoised)), final=records.coef_final,
                 t=np.array([i.t for i in records.infos]), shell=records.bins.shell.numpy())
    return dict(np.load(path))


def crossings(run_data: dict) -> dict[str, float | None]:
    den, x0, t, shell = run_data["den"], run_data["final"], run_data["t"], run_data["shell"]
    out = {}
    for name, sel in [(f"shell {n}", shell == n) for n in (1, 2, 3)] + [("shells 1-2", (shell == 1) | (shell == 2))]:
        d = den[..., sel] - den[..., sel].mean(1, keepdims=True)
        x = x0[..., sel] - x0[..., sel].mean(0, keepdims=True)
        var_x = (np.abs(x) ** 2).mean()
        out[f"{name} var"] = detection.decision(t, (np.abs(d) ** 2).mean((1, 2, 3)) / var_x)
        if name.startswith("shell "):
            out[f"{name} cov"] = detection.decision(t, (d * np.conj(x)[None]).real.mean((1, 2, 3)) / var_x)
            mse = (np.abs(den[..., sel] - x0[None][..., sel]) ** 2).mean((1, 2, 3))
            out[f"{name} mse"] = detection.decision(t, 1 - mse / var_x)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="builtin:digits")
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--ranges", type=int, default=12)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/diffcrit-decision-estimators"))
    args = parser.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    per_range = [crossings(coefficients(args.model, args.samples, args.steps, r * args.samples, args.cache))
                 for r in range(args.ranges)]
    for key in per_range[0]:
        values = np.array([np.nan if r[key] is None else r[key] for r in per_range])
        print(f"{key:16s} median {np.nanmedian(values):.2f}  std(first 6) {np.nanstd(values[:6], ddof=1):.3f}  "
              f"std(all {len(values)}) {np.nanstd(values, ddof=1):.3f}  {np.round(values, 2).tolist()}")


if __name__ == "__main__":
    main()
