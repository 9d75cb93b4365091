"""Exact analytic references of docs/design.md §7 (ground truth for the engine)."""

import math

import numpy as np
import pytest

import diffcrit
from diffcrit.models.builtins import make_analytic
from diffcrit.spectral.fourier import plane_wave_directions

# A Gaussian field has a speciation time per mode (the decided fraction crosses 1/2) but no
# softening or instability: none of these may fire on it.
STIFFNESS_MARKERS = ("stiffness_zero", "stiffness_min", "xi_eq_peak")


@pytest.mark.parametrize("probe", ["jvp", "fd"])
def test_gaussian_stiffness_equals_theory_at_every_step(probe):
    result = diffcrit.analyze("builtin:gaussian?size=16", steps=30, samples=8, probe=probe, bootstrap=20,
                              probe_schedule="every")
    doc = result.to_dict()
    measured = np.array([s["stiffness"] for s in doc["steps"]])
    predicted = np.array(doc["theory"]["stiffness"])
    assert measured.shape == predicted.shape == (30, 4)
    np.testing.assert_allclose(measured, predicted, atol=1e-3)
    assert predicted.min() > 0  # no mode ever softens
    assert all(doc["critical"]["markers"][m] is None for m in STIFFNESS_MARKERS)  # negative control


def test_gaussian_has_no_stiffness_marker_with_many_steps():
    doc = diffcrit.analyze("builtin:gaussian?size=16", steps=150, samples=8, directions=2, bootstrap=0).to_dict()
    assert all(doc["critical"]["markers"][m] is None for m in STIFFNESS_MARKERS)
    assert doc["critical"]["markers"]["instability_onset"] is None


def test_gaussian_theory_is_sigma2_over_p_plus_sigma2():
    model = make_analytic("builtin:gaussian?size=16")
    directions = plane_wave_directions(model.shape, 3, 2)
    theory = model.theory([2.0], directions)["stiffness"][0]
    p = model.power(directions.freq)
    for n in range(3):
        expected = (4.0 / (p[directions.shell == n] + 4.0)).mean().item()
        assert theory[n] == pytest.approx(expected)


@pytest.mark.parametrize("m2", [9.0, 16.0])
def test_mixture_stiffness_zero_at_log1p_m2(m2):
    doc = diffcrit.analyze(f"builtin:mixture?m2={m2}&size=16", linearize_at="zero", steps=60, samples=4,
                           bootstrap=0).to_dict()
    marker = doc["critical"]["markers"]["stiffness_zero"]
    assert marker is not None
    assert marker["t"] == pytest.approx(math.log1p(m2), rel=0.01)
    assert doc["theory"]["critical_t"] == pytest.approx(math.log1p(m2))
    # at y = 0 the whole stiffness curve is exact
    assert doc["theory"]["measured_minus_predicted"]["stiffness_max_rel"] < 1e-4


def test_mixture_dc_stiffness_formula():
    """At y = 0 along m: s = 1 - |m|^2 / sigma^2 on shell 0, and s = 1 on the other shells."""
    doc = diffcrit.analyze("builtin:mixture?m2=4&size=8", linearize_at="zero", steps=10, samples=2,
                           probe_schedule="every", bootstrap=0).to_dict()
    for step in doc["steps"]:
        assert step["stiffness"][0] == pytest.approx(1 - 4 / step["sigma"] ** 2, rel=1e-4, abs=1e-4)
        assert step["stiffness"][1:] == pytest.approx([1.0] * 3, abs=1e-5)
