"""The transition verdict against the Gaussian null (docs/design.md §6a), on the exact references.

Negative control: a Gaussian field decides as its null f_G = sum P^2/(P + sigma^2) / sum P: a crossover, never
evidence, at coarse and fine schedules. Positive controls in the place a rule would not pick: the two-point
mixture and the mixture with within-class noise decide in the DC shell (one FFT bin), and only there.
"""

import json
import math

import numpy as np
import pytest

import diffcrit
from diffcrit.analysis import estimators, transition
from diffcrit.cli import app
from diffcrit.models.builtins import make_analytic
from diffcrit.models.builtins.analytic import noisy_mixture_decided
from diffcrit.spectral.fourier import low_bins
from diffcrit.report.document import validate_document
from diffcrit.report.view import Critical


def test_gaussian_decided_is_the_exact_decided_fraction_of_a_gaussian_field():
    model = make_analytic("builtin:gaussian?xi=4&size=16")
    bins = low_bins(16, 16, 4)
    power = model.spectrum.flatten()[bins.index].numpy()[None, :]  # (C, Q): the exact spectrum
    sigma = np.array([0.5, 2.0, 7.0])
    null = estimators.gaussian_decided(power, bins.shell.numpy(), sigma, 4)
    assert null.shape == (3, 4)
    assert np.allclose(null, [model.decided(s, 4) for s in sigma], rtol=1e-6)


def test_excess_is_the_mean_gap_inside_the_null_window():
    t = np.linspace(5, 0, 11)
    null = np.linspace(0.0, 1.0, 11)
    assert transition.excess_over_null(t, null + 0.1, null, null) == pytest.approx(0.1)
    assert transition.excess_over_null(t, null, null, null + 0.02) == pytest.approx(-0.02)
    # fewer than MIN_WINDOW_STEPS steps inside the window: undefined
    assert transition.excess_over_null(t[:8], null[:8], null[:8], null[:8]) is None


def test_basic_interval_corrects_a_bias_the_resamples_repeat():
    # resamples that read 0.02 higher than the point estimate (a plug-in bias) pull the interval down by as much
    entry = transition.verdict(0.03, list(np.linspace(0.04, 0.06, 41)), 0)
    assert entry["ci95"] == pytest.approx([0.0, 0.02], abs=1e-3)
    assert not entry["evidence"]
    assert transition.verdict(0.1, list(np.linspace(0.09, 0.11, 41)), 2)["evidence"]


def test_widened_band_holds_the_curve_half_a_step_either_side():
    t = np.array([3.0, 2.0, 1.0, 0.0])
    band = np.stack([np.array([0.1, 0.3, 0.6, 0.9]), np.array([0.2, 0.4, 0.7, 1.0])], -1)[:, None, :]
    wide = transition.widen_band(t, band, np.full(4, 0.5))
    assert wide[1, 0].tolist() == pytest.approx([0.2, 0.55])  # t = 2: edges from t = 2.5 and 1.5
    assert (wide[..., 0] <= band[..., 0]).all() and (wide[..., 1] >= band[..., 1]).all()


@pytest.mark.parametrize("xi, steps", [(1.5, 25), (8.0, 100)])
def test_gaussian_field_is_a_crossover_not_a_transition(xi, steps):
    spec = f"builtin:gaussian?xi={xi}&size=16"
    doc = diffcrit.analyze(spec, steps=steps, samples=64, bootstrap=100, probe_schedule="every",
                           probe_every=steps).to_dict()
    validate_document(doc)
    assert not doc["critical"]["found"] and doc["critical"]["t"] is None
    assert [entry["evidence"] for entry in doc["transition"]] == [False] * 4
    assert doc["critical"]["transition"]["shell"] is None
    # the decision time stays, and its interval holds the exact one despite Euler's first-order bias
    decision, exact = doc["critical"]["markers"]["decision"], doc["theory"]["markers"]["decision"]
    assert decision["ci95"][0] <= exact <= decision["ci95"][1]
    read = Critical.from_document(doc["critical"])
    assert read.working_time().source == "decision"
    assert read.transition_words().startswith("no evidence of a phase transition")
    # the null is recorded beside the decided fraction at every step
    assert all(len(step["gaussian_decided"]) == 4 for step in doc["steps"])


def exact_curve(m2: float, noise: float, sigma: float, shell: int) -> float:
    return noisy_mixture_decided(m2, noise, sigma) if shell == 0 else noise / (noise + sigma**2)


def band_coverage(doc, m2: float, noise: float) -> float:
    hits = [ci[0] <= exact <= ci[1] for step in doc["steps"] for shell, ci in enumerate(step["decided_ci95"])
            if ci[0] is not None and 0.1 < (exact := exact_curve(m2, noise, step["sigma"], shell)) < 0.9]
    assert len(hits) > 10
    return float(np.mean(hits))


@pytest.fixture(scope="module")
def noisy_mixture():
    return diffcrit.analyze("builtin:mixture?size=16&m2=64&noise=1", samples=256, steps=50, bootstrap=100,
                            probe_schedule="every", probe_every=50).to_dict()


def test_within_class_noise_transition_is_found_in_the_dc_shell_only(noisy_mixture):
    doc = noisy_mixture
    validate_document(doc)
    assert [entry["evidence"] for entry in doc["transition"]] == [True, False, False, False]
    critical = doc["critical"]
    assert critical["found"] and critical["decision_shell"] == 0 and critical["transition"]["shell"] == 0
    exact = noisy_mixture_decided(64.0, 1.0, math.sqrt(math.expm1(doc["theory"]["markers"]["decision"])))
    assert exact == pytest.approx(0.5, abs=1e-6)  # the exact phi = 3/4 point of Biroli et al. 2024
    assert critical["ci95"][0] <= doc["theory"]["markers"]["decision"] <= critical["ci95"][1]
    assert band_coverage(doc, 64.0, 1.0) >= 0.9
    assert Critical.from_document(critical).transition_words().startswith("transition in shell 0")


def test_the_default_shell_rule_would_have_missed_it(noisy_mixture):
    """Forcing the old rule's shell (lowest varying shell with >= 4 bins) reports a crossover there."""
    doc = diffcrit.analyze("builtin:mixture?size=16&m2=64&noise=1", samples=256, steps=50, bootstrap=100,
                           probe_schedule="every", probe_every=50, decision_shell=1).to_dict()
    assert doc["critical"]["decision_shell"] == 1 and not doc["critical"]["found"]
    assert doc["transition"] == noisy_mixture["transition"]


def test_pure_mixture_evidence_and_band(mixture_256):
    doc = mixture_256
    assert [entry["shell"] for entry in doc["transition"]] == [0, 1, 2, 3]
    assert doc["transition"][0]["evidence"] and doc["critical"]["found"]
    assert doc["critical"]["ci95"][0] <= 2.986 <= doc["critical"]["ci95"][1]
    assert band_coverage(doc, 16.0, 0.0) >= 0.9


@pytest.fixture(scope="module")
def mixture_256():
    return diffcrit.analyze("builtin:mixture?size=16", samples=256, steps=50, bootstrap=100,
                            probe_schedule="every", probe_every=50).to_dict()


def test_cli_summary_says_no_transition(tmp_path):
    from typer.testing import CliRunner

    out = tmp_path / "g.json"
    result = CliRunner().invoke(app, ["analyze", "--model", "builtin:gaussian?size=16", "--samples", "32",
                                      "--steps", "20", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "no evidence of a phase transition beyond a Gaussian crossover" in " ".join(result.output.split())


@pytest.fixture(scope="module")
def gaussian_pair(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gauss")
    paths = []
    for seed in (0, 64):
        doc = diffcrit.analyze("builtin:gaussian?size=16", steps=20, samples=64, seed=seed, bootstrap=50).to_dict()
        path = folder / f"g{seed}.json"
        path.write_text(json.dumps(doc))
        paths.append(path)
    return paths


def test_guide_works_with_the_decision_time_of_a_result_without_transition(gaussian_pair):
    from diffcrit.guidance.engine import critical_from_file

    doc = json.loads(gaussian_pair[0].read_text())
    assert not doc["critical"]["found"]
    found = critical_from_file(gaussian_pair[0])
    assert found["t"] == doc["critical"]["markers"]["decision"]["t"]
    assert "decision time (no transition evidenced" in found["source"]


def test_check_compares_decision_times_when_no_transition_is_evidenced(gaussian_pair):
    from diffcrit.release.checking import CHECK_CRITICAL_FOUND, CHECK_CRITICAL_T, STATUS_PASS, compare_results

    candidate, baseline = (json.loads(p.read_text()) for p in gaussian_pair)
    outcomes = {o.name: o for o in compare_results(candidate, baseline)}
    assert outcomes[CHECK_CRITICAL_FOUND].status == STATUS_PASS
    assert "no transition evidenced" in outcomes[CHECK_CRITICAL_FOUND].detail
    assert outcomes[CHECK_CRITICAL_T].status == STATUS_PASS
    assert "decision times" in outcomes[CHECK_CRITICAL_T].detail
