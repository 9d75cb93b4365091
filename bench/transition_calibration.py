"""Calibrate and check the transition verdict (docs/design.md §6a) on the exact references.

Negative controls: builtin:gaussian at xi = 1.5, 4, 8 px, disjoint sample ranges, 25/50/100 steps, 32-128
samples: no shell may show evidence (the largest lower ci95 bound over all shells and runs sets the margin).
Positive controls: builtin:mixture (x0 = ±m, |m|^2 = 16) and the mixture with within-class noise
(x0 = ±m + g, noise 1, |m|^2 = 16 and 64), 256 samples: evidence in the DC shell only. Also records, on every
run, whether the decision marker's ci95 covers the exact decision time of its shell, and the share of steps
(decided in 0.1-0.9) whose per-step decided_ci95 covers the exact curve (mixtures).

    python bench/transition_calibration.py [--quick] [--out bench/results/transition-calibration.json]
    python bench/transition_calibration.py --trained [--out bench/results/transition-trained.json]
    python bench/transition_calibration.py --sampler ddpm [--out bench/results/transition-ddpm.json]

Runs on the CPU (about 15 minutes on 2 cores; --quick: one range per setting, about 3 minutes). ``--trained``
runs the verdict on the trained built-ins instead: analyze defaults, 6 disjoint ranges of 128 samples each.
``--sampler ddpm`` samples the references with diffusers' DDPMScheduler (ancestral, the trained built-ins' own:
cosine betas, leading spacing) instead of Euler on the Karras schedule, through an exact epsilon network.
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

import diffcrit  # noqa: E402
from diffcrit.models.builtins import make_analytic  # noqa: E402
from diffcrit.models.builtins.analytic import noisy_mixture_decided  # noqa: E402
from diffcrit.models.loading import LoadedModel  # noqa: E402


class ExactEpsilon:
    """An exact denoiser D(y, sigma) as a VP epsilon network for a diffusers scheduler (y = x_t / sqrt(ab))."""

    def __init__(self, fn, alphas_cumprod: torch.Tensor):
        from diffcrit.models.schedulers import AlphaBarFrame

        self.fn, self.alphas_cumprod, self.device = fn, alphas_cumprod, torch.device("cpu")
        self.frame = AlphaBarFrame("epsilon", alphas_cumprod)  # what the Gaussian null samples through

    def model_output(self, x: torch.Tensor, timestep, cond=None) -> torch.Tensor:
        ab = self.alphas_cumprod[int(timestep)].double()
        sigma = torch.sqrt((1 - ab) / ab)
        d = self.fn((x.double() / torch.sqrt(ab)).float(), sigma.float().expand(x.shape[0])).double()
        return ((x.double() - torch.sqrt(ab) * d) / torch.sqrt(1 - ab)).float()

    def __call__(self, y, sigma, timestep=None, cond=None):
        return self.fn(y, sigma)

    def denoised(self, output: torch.Tensor, y: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return y - sigma.view(-1, 1, 1, 1) * output


def ddpm_loaded(spec: str) -> LoadedModel:
    """The analytic model ``spec`` sampled by DDPMScheduler as the trained built-ins configure it."""
    from diffusers import DDPMScheduler

    field = make_analytic(spec)
    scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", prediction_type="epsilon",
                              clip_sample=False, timestep_spacing="leading")
    adapter = ExactEpsilon(field, scheduler.alphas_cumprod)
    info = {"id": f"{spec} (DDPMScheduler)", "source": "builtin", "shape": list(field.shape)}
    return LoadedModel(adapter, field.shape, info, torch.device("cpu"), theory=field.theory, scheduler=scheduler)


def gaussian_runs(quick: bool):
    for xi in (1.5, 4.0, 8.0):
        for samples in (128,) if quick else (32, 64, 128):
            for steps in (25, 50, 100):
                ranges = 1 if quick else (6 if (steps == 50 and samples == 128) else 2)
                for r in range(ranges):
                    yield f"builtin:gaussian?xi={xi}", steps, samples, r * samples


def mixture_runs(quick: bool):
    for spec in ("builtin:mixture", "builtin:mixture?noise=1&m2=64", "builtin:mixture?noise=1"):
        for steps in (25, 50, 100):
            for r in range(1 if quick else (6 if steps == 50 else 2)):
                yield spec, steps, 256, r * 256


def trained_runs():
    for spec in ("builtin:digits", "builtin:textures"):
        for r in range(6):
            yield spec, 50, 128, r * 128


def exact_decided(spec: str, sigma: float, shell: int) -> float | None:
    if not spec.startswith(("builtin:gaussian", "builtin:mixture")):
        return None
    model = make_analytic(spec)
    if spec.startswith("builtin:gaussian"):
        return model.decided(sigma, 4)[shell]
    if shell == 0:
        return noisy_mixture_decided(model.m2, model.noise, sigma)
    return model.noise / (model.noise + sigma**2) if model.noise > 0 else None


def summarize(spec: str, steps: int, samples: int, seed: int, sampler: str = "euler") -> dict:
    started = time.perf_counter()
    loaded = ddpm_loaded(spec) if sampler == "ddpm" else None
    doc = diffcrit.analyze(spec, loaded=loaded, steps=steps, samples=samples, seed=seed).to_dict()
    critical, theory = doc["critical"], doc.get("theory") or {}
    decision = critical["markers"]["decision"]
    exact_t = (theory.get("markers") or {}).get("decision")
    covered = None if decision is None or exact_t is None or decision["ci95"] is None else \
        decision["ci95"][0] <= exact_t <= decision["ci95"][1]
    band = []
    for step in doc["steps"]:
        for shell, ci in enumerate(step["decided_ci95"] or []):
            exact = exact_decided(spec, step["sigma"], shell)
            if exact is not None and 0.1 < exact < 0.9 and ci[0] is not None:
                band.append(ci[0] <= exact <= ci[1])
    return {"model": spec, "sampler": sampler, "steps": steps, "samples": samples, "seed": seed,
            "found": critical["found"],
            "decision_shell": critical["decision_shell"], "transition": doc["transition"],
            "decision_t": None if decision is None else decision["t"], "exact_decision_t": exact_t,
            "decision_covered": covered, "band_covered": sum(band), "band_steps": len(band),
            "seconds": round(time.perf_counter() - started, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--trained", action="store_true", help="the trained built-ins instead of the references")
    parser.add_argument("--sampler", choices=("euler", "ddpm"), default="euler",
                        help="the references' sampler: Euler on the Karras schedule, or diffusers' DDPMScheduler")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    name = "trained" if args.trained else ("calibration" if args.sampler == "euler" else args.sampler)
    args.out = args.out or f"bench/results/transition-{name}.json"
    runs = []
    kinds = (("trained", trained_runs()),) if args.trained else \
        (("gaussian", gaussian_runs(args.quick)), ("mixture", mixture_runs(args.quick)))
    for kind, jobs in kinds:
        for job in jobs:
            row = {"kind": kind, **summarize(*job, sampler="euler" if kind == "trained" else args.sampler)}
            runs.append(row)
            lows = [e["ci95"][0] for e in row["transition"] if e["ci95"]]
            print(f"{row['model']:32s} {row['steps']:4d} {row['samples']:4d} {row['seed']:5d} "
                  f"found={row['found']!s:5s} max lower={max(lows) if lows else float('nan'):+.3f} "
                  f"decision covered={row['decision_covered']} band {row['band_covered']}/{row['band_steps']}",
                  flush=True)
    gauss_lows = [e["ci95"][0] for r in runs if r["kind"] == "gaussian" for e in r["transition"] if e["ci95"]]
    summary = {
        "gaussian_runs": sum(r["kind"] == "gaussian" for r in runs),
        "gaussian_false_transitions": sum(r["found"] for r in runs if r["kind"] == "gaussian"),
        "gaussian_max_lower_bound": max(gauss_lows) if gauss_lows else None,
        "gaussian_decision_covered": [sum(bool(r["decision_covered"]) for r in runs if r["kind"] == "gaussian"),
                                      sum(r["decision_covered"] is not None for r in runs if r["kind"] == "gaussian")],
        "models": {spec: {"runs": len(rows), "found": sum(r["found"] for r in rows),
                          "evidence_by_shell": [sum(r["transition"][n]["evidence"] for r in rows)
                                                for n in range(len(rows[0]["transition"]))],
                          "critical_shell": [r["decision_shell"] for r in rows],
                          "critical_t": [r["decision_t"] for r in rows],
                          "decision_covered": sum(bool(r["decision_covered"]) for r in rows),
                          "band_coverage": sum(r["band_covered"] for r in rows)
                          / max(1, sum(r["band_steps"] for r in rows))}
                     for spec in sorted({r["model"] for r in runs if r["kind"] in ("mixture", "trained")})
                     for rows in [[r for r in runs if r["model"] == spec]]},
        "margin": runs[0]["transition"][0].get("margin") if runs else None,
    }
    print(json.dumps(summary, indent=1))
    with open(args.out, "w") as handle:
        json.dump({"command": "python bench/transition_calibration.py" + (" --quick" if args.quick else ""),
                   "diffcrit_version": diffcrit.__version__, "summary": summary, "runs": runs}, handle, indent=1)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
