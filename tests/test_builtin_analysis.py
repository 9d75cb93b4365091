"""diffcrit on the trained built-ins, through the public path.

These pin what was measured (docs/measurements.md "Transition or crossover?", MODEL_CARD.md "Critical time"):
along trajectories both models are consistent at every step (decided fraction <= 1.25), decide shell 3 faster
than their Gaussian null, and its decision marker sits at t ≈ 0.58 (textures) and t ≈ 1.43 (digits); at y = 0
the digits DC mode turns unstable late (stiffness_zero).
"""

import json

import pytest

import diffcrit
from diffcrit.training import CHECKPOINTS

STIFFNESS_ZERO_DIGITS = 0.17  # t, measured at y = 0 (50 steps)


# Measured over 6 disjoint ranges of 128 samples (bench/results/transition-trained.json): a transition beyond the
# Gaussian null sampled by their own DDPM scheduler in shell 3 of both, at t in 0.555-0.613 (textures) and
# 1.357-1.504 (digits).
@pytest.mark.parametrize("name, expected", [("textures", 0.58), ("digits", 1.43)])
def test_default_analysis_finds_the_decision_time(name, expected):
    document = diffcrit.analyze(f"builtin:{name}", bootstrap=50).to_dict()
    critical = document["critical"]
    assert critical["found"] and critical["primary"] == "decision" and critical["decision_shell"] == 3
    assert critical["transition"]["evidence"] and critical["transition"]["null"] == "sampled"
    assert not document["transition"][0]["evidence"]  # the DC mode decides as its null
    # three times the spread between ranges: a different sample range would still pass, a broken estimator not
    assert critical["t"] == pytest.approx(expected, abs=3 * {"textures": 0.03, "digits": 0.08}[name])
    assert critical["ci95"][0] < critical["t"] < critical["ci95"][1]
    assert document["diagnostics"]["total_variance"]["inconsistent_steps"] == []
    assert max(document["diagnostics"]["total_variance"]["max_decided"]) <= 1.25
    assert document["model"]["conditioning"]["class_label"] == CHECKPOINTS[name]["null_class"]


def test_digits_at_zero_finds_the_late_dc_instability():
    document = diffcrit.analyze("builtin:digits", linearize_at="zero", steps=50, samples=8, bootstrap=0).to_dict()
    assert document["critical"]["primary"] == "stiffness_zero"
    assert document["critical"]["markers"]["stiffness_zero"]["t"] == pytest.approx(STIFFNESS_ZERO_DIGITS, abs=0.1)


@pytest.mark.parametrize("name", sorted(CHECKPOINTS))
def test_card_reports_the_measured_critical_time(name):
    config = json.loads((CHECKPOINTS[name]["path"] / "train_config.json").read_text())
    card = (CHECKPOINTS[name]["path"] / "MODEL_CARD.md").read_text()
    runs = config["critical_time"]["runs"]
    assert len(runs) == 3 and "Critical time measured by diffcrit" in card
    starts = [run["seed"] for run in runs]
    # disjoint sample ranges
    assert all(b - a >= run["samples"] for a, b, run in zip(starts[:-1], starts[1:], runs[:-1], strict=True))
    for run in runs:
        assert (f"{run['t']:.3f}" if run["t"] is not None else "| - |") in card
