"""The class decision estimators (diffcrit/analysis/class_decision.py) on synthetic clone labels."""

from __future__ import annotations

import numpy as np
import pytest

from diffcrit.analysis.class_decision import (chance_agreement, class_decision, clone_agreement,
                                              decided_class_fraction)


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
    undecided = class_decision(t_branch, *synthetic_clones(t_branch, -5.0, 500, 10)[:3], repeats=0, seed=0)
    assert undecided["t"] is None and undecided["ci95"] is None  # never halfway within the branch steps
