"""Clones (--clones): the decided fraction measured by two stochastic continuations per sample, against the
exact references of tests/test_ensemble.py and the decided fraction itself."""

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import diffcrit
from diffcrit.analysis import estimators
from diffcrit.sampling import clones
from diffcrit.models.builtins import make_analytic
from diffcrit.cli import app
from diffcrit.report.document import read_document
from test_ensemble import gaussian_decided, mixture_decided


def test_branch_steps_spread_over_the_run_and_skip_the_last():
    assert clones.branch_steps(50, 0) == []
    assert clones.branch_steps(50, 3) == [12, 24, 36]
    assert clones.branch_steps(4, 10) == [0, 1, 2]  # distinct, never the last step
    assert clones.descending([5.0, 3.0, 3.0, 1.0, 2.0, 0.5], 1) == [1, 3, 5]  # Heun-style repeats skipped


def test_ancestral_step_is_the_ddpm_posterior_in_the_ve_frame():
    y, d, z = torch.full((1, 1, 1, 1), 2.0), torch.full((1, 1, 1, 1), 0.5), torch.full((1, 1, 1, 1), 1.0)
    keep = 0.25  # (1 / 2)^2
    expected = keep * 2.0 + (1 - keep) * 0.5 + 1.0 * np.sqrt(1 - keep) * 1.0
    assert clones.ancestral_step(y, d, 2.0, 1.0, z).item() == pytest.approx(expected)
    assert clones.ancestral_step(y, d, 2.0, 0.0, z).item() == 0.5


def test_clone_fraction_is_one_for_identical_clones_and_zero_for_independent_ones():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((4000, 1, 3)) + 1j * rng.standard_normal((4000, 1, 3))
    b = rng.standard_normal((4000, 1, 3)) + 1j * rng.standard_normal((4000, 1, 3))
    shell = np.array([0, 1, 1])
    np.testing.assert_allclose(estimators.clone_fraction(a, a, shell, 3)[:2], 1.0)
    assert np.abs(estimators.clone_fraction(a, b, shell, 3)[:2]).max() < 0.05
    assert np.isnan(estimators.clone_fraction(a, b, shell, 3)[2])  # no bins in shell 2
    half = a + b  # Cov(a + b, a + c) / Var(a + b) = 1/2
    other = a + rng.standard_normal((4000, 1, 3)) + 1j * rng.standard_normal((4000, 1, 3))
    assert estimators.clone_fraction(half, other, shell, 3)[:2] == pytest.approx([0.5, 0.5], abs=0.05)


GAUSSIAN = "builtin:gaussian?size=16"


def _gaussian_clone_error(steps: int) -> np.ndarray:
    """Mean (clone fraction - exact P/(P + sigma^2)) per shell 1..3 over 4 branch steps."""
    model = make_analytic(GAUSSIAN)
    block = diffcrit.analyze(GAUSSIAN, samples=512, steps=steps, clones=4, bootstrap=0,
                             probe_schedule="every", probe_every=1000).to_dict()["clones"]
    assert block["branch_steps"] == clones.branch_steps(steps, 4) and block["per_trunk"] == 2
    return np.mean([np.array(f[1:]) - gaussian_decided(model, s)[1:]
                    for s, f in zip(block["sigma"], block["fraction"], strict=True)], 0)


def test_gaussian_clones_converge_to_p_over_p_plus_sigma2():
    """The ancestral step leaves out Var[x0 | y] from its noise, so clones come out slightly too alike: a
    first-order sampler error that halves with twice the steps (the DC shell, one bin, is left to the mixture)."""
    coarse, fine = _gaussian_clone_error(50), _gaussian_clone_error(200)
    assert (coarse > 0).all() and coarse.max() < 0.06
    assert np.abs(fine).max() < 0.5 * coarse.max()


def test_mixture_clones_equal_e_tanh2():
    doc = diffcrit.analyze("builtin:mixture?size=8", samples=256, steps=100, clones=3, bootstrap=50,
                           probe_schedule="every", probe_every=50).to_dict()
    block = doc["clones"]
    for sigma, fraction, band, decided in zip(block["sigma"], block["fraction"], block["fraction_ci95"],
                                              block["decided"], strict=True):
        exact = mixture_decided(16.0, sigma)
        assert band[0][0] - 0.03 <= exact <= band[0][1] + 0.03, (sigma, fraction[0], exact)
        assert abs(decided[0] - fraction[0]) < 0.1  # D(y)'s estimate agrees
        assert fraction[1:] == [None] * 3  # the samples vary in the DC shell only


def test_clones_do_not_depend_on_the_batch_size():
    options = dict(samples=6, steps=12, clones=2, bootstrap=0, probe_schedule="every", probe_every=6)
    one = diffcrit.analyze("builtin:mixture?size=8", batch_size=6, **options).to_dict()["clones"]
    two = diffcrit.analyze("builtin:mixture?size=8", batch_size=4, **options).to_dict()["clones"]
    np.testing.assert_allclose(np.array(one["fraction"], dtype=float), np.array(two["fraction"], dtype=float),
                               rtol=0, atol=1e-6)
    assert one["fraction_ci95"] is None


def test_cli_clones_option_and_schema(tmp_path):
    out = tmp_path / "r.json"
    result = CliRunner().invoke(app, ["analyze", "--model", "builtin:mixture?size=8", "--steps", "12", "--samples",
                                      "8", "--clones", "2", "--bootstrap", "10", "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    doc = read_document(out)
    assert len(doc["clones"]["branch_steps"]) == 2 and doc["timing"]["clones_s"] > 0
    off = CliRunner().invoke(app, ["analyze", "--model", "builtin:mixture?size=8", "--steps", "12", "--samples", "4",
                                   "--bootstrap", "0", "--quiet"])
    assert json.loads(off.stdout)["clones"] is None
    bad = CliRunner().invoke(app, ["analyze", "--model", "builtin:mixture?size=8", "--clones", "-1", "--quiet"])
    assert bad.exit_code == 2 and "clones" in bad.output
