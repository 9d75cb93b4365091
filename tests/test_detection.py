"""Marker definitions of docs/design.md §6 on synthetic curves with known answers."""

import math

import numpy as np
import pytest

from diffcrit.analysis import detection
from diffcrit.frame import karras_sigmas


def grid(n=60):
    sigma = karras_sigmas(n).numpy()
    return np.log1p(sigma**2)


def test_stiffness_zero_interpolates_linearly_in_t():
    t = np.array([4.0, 3.0, 2.0, 1.0])
    assert detection.stiffness_zero(t, np.array([0.5, 0.25, -0.75, -1.0])) == pytest.approx(2.75)
    assert detection.stiffness_zero(t, np.array([-0.5, -0.2, -0.1, -1.0])) is None  # never >= 0 before
    assert detection.stiffness_zero(t, np.array([0.5, 0.2, -1e-6, 0.1])) is None  # round-off is no crossing
    assert detection.stiffness_zero(t, np.array([1e-4, -2e-4, 5e-5, -3e-4])) is None  # never resolved above 0
    assert detection.stiffness_zero(t, np.array([2e-4, 0.0, -2e-4, -3e-4])) == pytest.approx(3.0)


def test_extremum_markers_need_an_interior_prominent_feature():
    t = grid()
    dip = 1 - 0.8 * np.exp(-((t - 2.0) ** 2) / 0.2)
    assert detection.stiffness_min(t, dip) == pytest.approx(2.0, abs=0.05)
    assert detection.stiffness_min(t, np.linspace(1, 0, len(t))) is None  # monotone: minimum at an end
    plateau = 4 - 4 * np.exp(-t) + 1e-3 * np.sin(40 * t)  # rises to a noisy plateau
    assert detection.xi_eq_peak(t, plateau) is None


@pytest.mark.parametrize("depth,found", [(5e-4, False), (9e-4, False), (1.2e-3, True), (0.5, True)])
def test_a_stiffness_dip_must_be_deeper_than_the_floor(depth, found):
    """Round-off / FD-level dips of a flat stiffness curve are no marker, however prominent relative to their range."""
    t = grid()
    flat = 1e-4 * np.sin(7 * t) * 0.1 - depth * np.exp(-((t - 2.0) ** 2) / 0.2)
    assert (detection.stiffness_min(t, flat) is not None) == found


def test_xi_growth_ignores_round_off_at_small_sigma():
    t = grid(100)
    log_sigma = 0.5 * np.log(np.expm1(t))
    xi = 1 + 3 / (1 + np.exp(4 * (log_sigma - math.log(3.0))))  # sigmoid rise around sigma = 3
    xi[-3:] += [0.0, 0.002, 0.0]  # a wobble at sigma ~ 0.002, tiny in xi but huge per unit t
    marker = detection.xi_growth(t, xi)
    assert marker == pytest.approx(math.log1p(9.0), rel=0.05)


def test_primary_marker_per_regime_is_never_a_median():
    assert detection.PRIMARY == {"trajectory": "decision", "zero": "stiffness_zero"}
    assert not hasattr(detection, "consensus")


def test_decision_reads_the_monotone_fit_of_a_wiggly_curve():
    t = np.array([5.0, 4.0, 3.0, 2.0, 1.0, 0.0])
    f = np.array([0.1, 0.3, 0.55, 0.45, 0.8, 1.0])  # one wiggle across 1/2: pooled by the isotonic fit
    assert detection.decision(t, f) == pytest.approx(3.0)  # fit 0.1, 0.3, 0.5, 0.5, 0.8, 1.0 reaches 1/2 at t = 3
    assert detection.decision(t, np.array([0.6, 0.7, 0.8, 0.9, 0.95, 1.0])) is None  # never below 1/2
    assert detection.decision(t, np.array([0.0, 0.1, 0.2, 0.3, 0.4, 0.45])) is None  # never above
    assert detection.decision(t, np.array([0.0, 0.2, 0.4, 0.6, 0.8, 1.0])) == pytest.approx(2.5)


def test_instability_onset_needs_a_step_before_and_after():
    t = np.array([5.0, 4.0, 3.0, 2.0, 1.0])
    assert detection.instability_onset(t, np.array([0.0, 0.0, 0.5, 0.2, 0.0])) == pytest.approx(3.5)
    assert detection.onset_bracket(t, np.array([0.0, 0.0, 0.5, 0.2, 0.0])) == (4.0, 3.0)
    assert detection.instability_onset(t, np.array([0.5, 0.5, 0.0, 0.0, 0.0])) is None  # unstable from the start
    assert detection.instability_onset(t, np.array([0.0, 0.0, 0.0, 0.0, 0.5])) is None  # last step only: round-off
    assert detection.instability_onset(t, np.array([0.0, np.nan, 0.0, 0.5, 0.1])) == pytest.approx(2.5)


def test_bootstrap_modes_split_a_bimodal_distribution():
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.normal(1.0, 0.05, 300), rng.normal(3.0, 0.05, 100)])
    modes = detection.bootstrap_modes(values)
    assert [round(m["t"], 1) for m in modes] == [1.0, 3.0]
    assert modes[0]["share"] == pytest.approx(0.75)
    summary = detection.summarize_bootstrap(list(values) + [None] * 100)
    assert summary["presence"] == pytest.approx(0.8) and summary["multimodal"]
    assert len(detection.bootstrap_modes(rng.normal(2.0, 0.1, 400))) == 1
