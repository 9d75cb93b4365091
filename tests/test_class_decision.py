"""The class decision estimators (diffcrit/analysis/class_decision.py) on synthetic clone labels, and
``analyze --clones --classifier`` on builtin:digits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from diffcrit.analysis.class_decision import (MARKER, MARKER_FB, chance_agreement, class_decision, clone_agreement,
                                              decided_class_fraction)
from diffcrit.cli import app


def synthetic_clones(t_branch, t_decided, n, classes, seed=0):
    """Clone pairs that both keep the trunk's class with probability F(t) = 1 / (1 + exp((t - t_decided) / 0.3)),
    else draw their labels afresh: agreement = A_0 + (1 - A_0) F(t) with A_0 = 1 / classes."""
    rng = np.random.default_rng(seed)
    shape = (len(t_branch), n)
    finals = rng.integers(0, classes, n)
    fixed = 1 / (1 + np.exp((np.asarray(t_branch)[:, None] - t_decided) / 0.3))
    kept = rng.uniform(size=shape) < fixed
    a = np.where(kept, finals, rng.integers(0, classes, shape))
    b = np.where(kept, finals, rng.integers(0, classes, shape))
    return a, b, finals, fixed[:, 0]


def test_chance_agreement_is_the_unbiased_sum_of_squared_shares():
    assert chance_agreement(np.array([0, 0, 1, 1])) == pytest.approx(2 * 2 / 12)  # n_k (n_k - 1) / (N (N - 1))
    assert chance_agreement(np.array([3, 3, 3])) == 1.0
    labels = np.random.default_rng(0).integers(0, 10, 20000)
    assert chance_agreement(labels) == pytest.approx(0.1, abs=0.003)
    with pytest.raises(ValueError, match="two samples"):
        chance_agreement(np.array([1]))


def test_fraction_runs_from_chance_to_one():
    assert decided_class_fraction(np.array([0.1, 0.55, 1.0]), 0.1).tolist() == pytest.approx([0.0, 0.5, 1.0])
    assert np.isnan(decided_class_fraction(np.array([1.0]), 1.0)).all()
    assert clone_agreement(np.array([[1, 2, 3]]), np.array([[1, 0, 3]])).tolist() == pytest.approx([2 / 3])


def test_class_decision_finds_the_halfway_time_with_an_interval():
    t_branch = np.linspace(5.0, 0.1, 15)  # generation order
    a, b, finals, _ = synthetic_clones(t_branch, 2.0, 2000, 10)
    result = class_decision(t_branch, a, b, finals, repeats=200, seed=0)
    assert result["chance"] == pytest.approx(0.1, abs=0.01)
    assert result["t"] == pytest.approx(2.0, abs=0.15)
    assert result["ci95"][0] <= result["t"] <= result["ci95"][1] and result["ci95"][1] - result["ci95"][0] < 0.5
    assert result["presence"] == 1.0
    low, high = sorted(result["bracket"])  # the two branch steps the linear reading lies between
    assert low <= result["t"] <= high and np.isin([low, high], t_branch).all()
    undecided = class_decision(t_branch, *synthetic_clones(t_branch, -5.0, 500, 10)[:3], repeats=0, seed=0)
    assert undecided["t"] is None and undecided["ci95"] is None  # never halfway within the branch steps


# --------------------------------------------------------------------------------------------
# Wired into analyze: --clones G --classifier (builtin:digits with its shipped classifier, unconditional: null class)

DIGITS = dict(steps=12, samples=16, clones=6, bootstrap=20, probe_samples=1, shells=2, directions=1,
              class_label=10)  # class 10: the null class, so the trunk finals span the classes


def test_analyze_with_clones_and_the_builtin_classifier_gives_the_class_decision_marker():
    from diffcrit import analyze
    from diffcrit.analysis import detection
    from diffcrit.models.scorers import load_scorer, predicted_classes
    from diffcrit.models.builtins import CHECKPOINTS
    from diffcrit.report.document import validate_document

    result = analyze("builtin:digits", classifier="builtin", **DIGITS)
    doc = result.to_dict()
    validate_document(doc)  # the shipped schema, as check reads it
    marker, block = doc["critical"]["markers"][MARKER], doc["clones"]
    assert marker is not None and marker["ci95"][0] <= marker["t"] <= marker["ci95"][1] and marker["presence"] > 0
    assert doc["critical"]["primary"] == detection.PRIMARY["trajectory"] != MARKER  # never the primary
    assert block["class_agreement"][-1] >= block["class_agreement"][0]
    bracket = detection.decision_bracket(np.array(block["t"]), np.array(block["class_fraction"], dtype=float))
    assert marker["ci95"][0] <= min(bracket) and max(bracket) <= marker["ci95"][1]  # the ci95 holds the branch steps
    assert block["classifier"]["form"] == "diffcrit" and doc["config"]["classifier"] == "builtin"
    scorer = load_scorer(Path(CHECKPOINTS["digits"]["path"]) / "classifier", torch.device("cpu"))
    trunk = predicted_classes(scorer, result.samples, None, 64)
    assert block["chance_agreement"] == pytest.approx(chance_agreement(trunk))
    # the forward-backward estimate on the same branch steps, on by default with the classifier: a marker beside it
    fb = doc["critical"]["markers"][MARKER_FB]
    assert fb is not None and fb["ci95"][0] <= fb["t"] <= fb["ci95"][1]
    keep = block["forward_backward"]["keep_rate"]
    assert len(keep) == len(block["t"]) and keep[-1] > keep[0] and keep[-1] > 0.8


def _analyze(*args):
    return CliRunner().invoke(app, ["analyze", "--steps", "4", "--samples", "2", "--bootstrap", "0", "--quiet", *args])


def test_classifier_without_clones_is_one_line_naming_clones():
    result = _analyze("--model", "builtin:digits", "--class-label", "10", "--classifier", "builtin")
    assert result.exit_code == 2 and "--clones" in result.output and "Traceback" not in result.output


def test_builtin_classifier_for_a_model_that_ships_none_is_a_user_error():
    result = _analyze("--model", "builtin:mixture?size=8", "--clones", "2", "--classifier", "builtin")
    assert result.exit_code == 2 and "ships no classifier" in result.output and "--classifier PATH" in result.output


def test_the_classifier_file_is_an_input_of_the_output_check(tmp_path):
    path = tmp_path / "classifier.pt"
    torch.jit.save(torch.jit.script(torch.nn.Flatten()), str(path))  # a TorchScript classifier file
    before = path.read_bytes()
    result = _analyze("--model", "builtin:mixture?size=8", "--clones", "2", "--classifier", str(path),
                      "--out", str(path))
    assert result.exit_code == 2 and "--classifier" in result.output and path.read_bytes() == before


def test_the_library_takes_a_path_or_builtin_and_needs_clones(tmp_path):
    from diffcrit.config import make_config
    from diffcrit.errors import UserError

    assert make_config(clones=2, classifier=tmp_path).classifier == str(tmp_path)  # a str in the JSON config
    with pytest.raises(UserError, match="`clones`"):
        make_config(classifier="builtin")
