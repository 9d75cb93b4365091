"""Ensemble observables along trajectories against their exact references (docs/design.md, "Ensemble observables").

Gaussian field: D is linear per Fourier mode, so the decided fraction of a shell is
sum P^2/(P + sigma^2) / sum P over its bins (P/(P + sigma^2) for a single mode), and the DC mode is
half decided at t = log(1 + P(0)). Two-point mixture x0 = ±m: decided = E tanh^2(a + sqrt(a) z),
a = |m|^2 / sigma^2, and trajectories turn unstable along m from t = log(1 + |m|^2) on.
"""

import math

import numpy as np
import pytest

import diffcrit
from diffcrit.models.builtins import make_analytic
from diffcrit.spectral.fourier import low_bins

NODES, WEIGHTS = np.polynomial.hermite_e.hermegauss(80)
WEIGHTS = WEIGHTS / WEIGHTS.sum()


def gaussian_decided(model, sigma: float) -> np.ndarray:
    bins = low_bins(model.size, model.size, 4)
    p, shell = model.spectrum.flatten()[bins.index].numpy(), bins.shell.numpy()
    return np.array([(p[shell == n] ** 2 / (p[shell == n] + sigma**2)).sum() / p[shell == n].sum() for n in range(4)])


def mixture_decided(m2: float, sigma: float) -> float:
    a = m2 / sigma**2
    return float((WEIGHTS * np.tanh(a + math.sqrt(a) * NODES) ** 2).sum())


def decided_error(doc, model) -> float:
    return max(np.abs(np.array(s["decided"]) - gaussian_decided(model, s["sigma"])).max() for s in doc["steps"])


def test_gaussian_decided_fraction_is_p_over_p_plus_sigma2():
    """The estimator is exact; what is left is the Euler sampler's first-order error (halves with twice the steps)."""
    model = make_analytic("builtin:gaussian")
    options = dict(samples=32, bootstrap=20, probe_schedule="every", probe_every=10)
    coarse = diffcrit.analyze("builtin:gaussian", steps=50, **options).to_dict()
    fine = diffcrit.analyze("builtin:gaussian", steps=100, **options).to_dict()
    assert decided_error(coarse, model) < 0.03
    assert decided_error(fine, model) < 0.6 * decided_error(coarse, model)
    # shell 1 (the lowest with >= 4 bins) is half decided where its exact curve crosses 1/2
    assert fine["critical"]["primary"] == "decision" and fine["critical"]["decision_shell"] == 1
    exact = model.decision_times(4)
    assert model.decided(math.sqrt(math.expm1(exact[1])), 4)[1] == pytest.approx(0.5)
    assert fine["critical"]["markers"]["decision"]["t"] == pytest.approx(exact[1], rel=0.03)
    assert fine["theory"]["markers"]["decision"] == exact[1]
    # a Gaussian field decides as its null: a crossover, no critical time (docs/design.md §6a)
    assert not fine["critical"]["found"] and fine["critical"]["t"] is None
    assert not any(entry["evidence"] for entry in fine["transition"])
    # the DC mode, asked for, is half decided at its speciation time log(1 + P(0))
    dc = diffcrit.analyze("builtin:gaussian", steps=100, decision_shell=0, **options).to_dict()
    assert exact[0] == pytest.approx(math.log1p(float(model.spectrum[0, 0])))
    assert dc["critical"]["markers"]["decision"]["t"] == pytest.approx(exact[0], rel=0.03)
    assert fine["diagnostics"]["total_variance"]["inconsistent_steps"] == []
    assert all(u == 0 for s in fine["steps"] if s["probed"] for u in s["unstable_fraction"])  # no mode is ever unstable


@pytest.fixture(scope="module")
def mixture():
    return diffcrit.analyze("builtin:mixture?size=16", samples=256, steps=100, probe_samples=32,
                            bootstrap=100).to_dict()


def test_mixture_decided_fraction_is_e_tanh2(mixture):
    middle = [s for s in mixture["steps"] if 0.1 < mixture_decided(16.0, s["sigma"]) < 0.9]
    covered = [lo <= mixture_decided(16.0, s["sigma"]) <= hi for s in middle for lo, hi in [s["decided_ci95"][0]]]
    assert len(middle) > 20 and np.mean(covered) >= 0.8
    # the samples vary only in the DC shell (m is a constant field)
    assert mixture["diagnostics"]["total_variance"]["varying_shells"] == [True, False, False, False]
    assert all(s["decided"][1:] == [None] * 3 for s in mixture["steps"])


def test_mixture_decision_covers_its_exact_crossing(mixture):
    assert mixture["critical"]["decision_shell"] == 0  # the only shell whose samples vary
    a = 16.0 / (math.exp(mixture["theory"]["markers"]["decision"]) - 1)  # |m|^2 / sigma^2 at the exact crossing
    assert mixture_decided(16.0, 4.0 / math.sqrt(a)) == pytest.approx(0.5, abs=1e-9)
    marker = mixture["critical"]["markers"]["decision"]
    assert marker["ci95"][0] <= mixture["theory"]["markers"]["decision"] <= marker["ci95"][1]
    assert marker["presence"] == 1.0


def test_mixture_instability_onset_is_log_one_plus_m2(mixture):
    onset = mixture["critical"]["markers"]["instability_onset"]
    assert onset["t"] == pytest.approx(math.log1p(16.0), rel=0.05)
    assert onset["ci95"][0] <= math.log1p(16.0) <= onset["ci95"][1] + 0.05 * math.log1p(16.0)
    # before the onset no trajectory is unstable; the mean stiffness never crosses 0 along trajectories
    assert all(s["unstable_fraction"][0] == 0 for s in mixture["steps"]
               if s["probed"] and s["t"] > math.log1p(16.0) + 0.3)
    assert mixture["critical"]["markers"]["stiffness_zero"] is None
    assert mixture["steps"][0]["point_stiffness"] is not None and len(mixture["steps"][0]["point_stiffness"]) == 32


@pytest.mark.parametrize("xi", [1.5, 4.0])
def test_correlation_length_resolves_the_gaussian_xi(xi):
    """Ornstein–Zernike fit over the low bins: at the end of sampling D(y) = x0 has the field's xi."""
    doc = diffcrit.analyze(f"builtin:gaussian?xi={xi}", samples=64, steps=20, bootstrap=0, probe_schedule="every",
                           probe_every=19).to_dict()
    assert doc["steps"][-1]["xi_denoised"] == pytest.approx(xi, rel=0.25)


def test_correlation_length_is_undefined_not_zero():
    doc = diffcrit.analyze("builtin:mixture?size=16", samples=8, steps=10, bootstrap=0).to_dict()
    assert all(s["xi_denoised"] is None for s in doc["steps"])  # only the DC mode varies: no length
    assert doc["diagnostics"]["xi"]["undefined_steps_denoised"] == 10
