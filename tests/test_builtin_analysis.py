"""diffcrit on the trained built-ins, through the public path (issue 4).

These pin what was measured (MODEL_CARD.md, "Critical time"): on textures the fastest growth of the
correlation length of D(y) marks t_c ≈ 2.95 along trajectories; on digits no marker appears along
trajectories, while at y = 0 the DC mode turns unstable late (stiffness_zero t ≈ 0.17).
"""

import json

import pytest

import diffcrit
from diffcrit.training import CHECKPOINTS


def test_textures_default_analysis_finds_a_critical_time():
    document = diffcrit.analyze("builtin:textures", bootstrap=50).to_dict()
    critical = document["critical"]
    assert critical["found"]
    assert critical["markers"]["xi_growth"]["t"] == pytest.approx(2.97, abs=0.3)
    assert document["model"]["conditioning"]["class_label"] == CHECKPOINTS["textures"]["null_class"]


def test_digits_at_zero_finds_the_late_dc_instability():
    document = diffcrit.analyze("builtin:digits", linearize_at="zero", steps=50, samples=8, bootstrap=0).to_dict()
    assert document["critical"]["markers"]["stiffness_zero"]["t"] == pytest.approx(0.17, abs=0.1)


@pytest.mark.parametrize("name", sorted(CHECKPOINTS))
def test_card_reports_the_measured_critical_time(name):
    config = json.loads((CHECKPOINTS[name]["path"] / "train_config.json").read_text())
    card = (CHECKPOINTS[name]["path"] / "MODEL_CARD.md").read_text()
    runs = config["critical_time"]["runs"]
    assert len(runs) == 3 and "Critical time measured by diffcrit" in card
    for run in runs:
        assert (f"{run['t']:.3f}" if run["t"] is not None else "| - |") in card
