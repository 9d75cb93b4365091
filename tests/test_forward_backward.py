"""The forward-backward class decision (noise a final sample to t, regenerate, does it keep its class?): the estimator
on synthetic labels, the regeneration's invariance to batching and its seeding, and ``analyze --clones --classifier``
on the two-point mixture, where both class decisions have an exact reference."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from diffcrit.analysis.class_decision import MARKER, MARKER_FB, chance_agreement, class_decision_fb, keep_rate
from diffcrit.cli import app
from diffcrit.config import make_config
from diffcrit.models.builtins import make_analytic
from diffcrit.models.builtins.analytic import MIXTURE_HALF_DECIDED_A
from diffcrit.models.loading import load_model
from diffcrit.report.document import read_document
from diffcrit.sampling import clones, forward_backward
from test_ensemble import mixture_decided


def synthetic_regenerations(t_branch, t_decided, n, classes, seed=0):
    """Regenerations that keep their final's class with probability F(t) = 1 / (1 + exp((t - t_decided) / 0.3)), else
    draw a label afresh: K = F + (1 - F) / classes, so F_fb = (K - A_0) / (1 - A_0) = F with A_0 = 1 / classes."""
    rng = np.random.default_rng(seed)
    finals = rng.integers(0, classes, n)
    fixed = 1 / (1 + np.exp((np.asarray(t_branch)[:, None] - t_decided) / 0.3))
    kept = rng.uniform(size=(len(t_branch), n)) < fixed
    return np.where(kept, finals, rng.integers(0, classes, (len(t_branch), n))), finals


def test_keep_rate_is_the_share_of_finals_whose_regeneration_keeps_their_class():
    assert keep_rate(np.array([[1, 2, 3], [1, 0, 0]]), np.array([1, 2, 0])).tolist() == pytest.approx([2 / 3, 2 / 3])
    with pytest.raises(ValueError, match="regenerated labels"):
        keep_rate(np.array([1, 2, 3]), np.array([1, 2, 3]))


def test_class_decision_fb_finds_the_halfway_time_with_an_interval():
    t_branch = np.linspace(5.0, 0.1, 15)  # generation order
    regenerated, finals = synthetic_regenerations(t_branch, 2.0, 2000, 10)
    result = class_decision_fb(t_branch, regenerated, finals, repeats=200, seed=0)
    assert result["chance"] == pytest.approx(chance_agreement(finals)) == pytest.approx(0.1, abs=0.01)
    assert result["agreement"] == pytest.approx(keep_rate(regenerated, finals).tolist())
    assert result["t"] == pytest.approx(2.0, abs=0.15)
    assert result["ci95"][0] <= result["t"] <= result["ci95"][1] and result["ci95"][1] - result["ci95"][0] < 0.5
    low, high = sorted(result["bracket"])
    assert low <= result["t"] <= high and np.isin([low, high], t_branch).all()
    never = class_decision_fb(t_branch, *synthetic_regenerations(t_branch, -5.0, 500, 10), repeats=0, seed=0)
    assert never["t"] is None and never["ci95"] is None


# --------------------------------------------------------------------------------------------
# The regeneration (sampling/forward_backward.py) on the exact two-point mixture

MIXTURE = "builtin:mixture?size=8"


def _regenerate(batch_size: int, seed: int = 0, samples: int = 6) -> dict[int, np.ndarray]:
    """The mean of every regenerated final (a continuous 'class', so any change of noise shows)."""
    config = make_config(samples=samples, seed=seed, batch_size=batch_size)
    loaded = load_model(MIXTURE, config)
    sigmas = [8.0, 4.0, 2.0, 1.0, 0.5, 0.2]
    infos = [SimpleNamespace(sigma=s, timestep=None, t=math.log1p(s * s)) for s in sigmas]
    finals = torch.where(torch.arange(samples) % 2 == 0, 1.0, -1.0).view(-1, 1, 1, 1) * make_analytic(MIXTURE).mean
    return forward_backward.run_forward_backward(loaded, config, infos, finals, [1, 3], range(samples),
                                                 lambda x: x.flatten(1).mean(1).numpy(), lambda event: None)


def test_regeneration_does_not_depend_on_the_batch_size_and_is_fixed_by_the_seed():
    one, other = _regenerate(batch_size=6), _regenerate(batch_size=4)
    assert sorted(one) == [1, 3]
    for step in one:
        np.testing.assert_allclose(one[step], other[step], rtol=1e-6, atol=1e-7)
        np.testing.assert_array_equal(one[step], _regenerate(batch_size=6)[step])
    assert not np.allclose(one[1], _regenerate(batch_size=6, seed=1)[1])
    # a sample's noise is its own: the first three of six are the three of a run of three
    np.testing.assert_allclose(_regenerate(batch_size=2, samples=3)[3], one[3][:3], rtol=1e-6, atol=1e-7)


def test_the_noising_and_regeneration_streams_are_not_the_clones():
    streams = {forward_backward.NOISING, forward_backward.REGENERATION}
    assert len(streams) == 2 and not streams & set(range(clones.PER_TRUNK))
    noise = forward_backward.noised(torch.zeros(2, 1, 2, 2), 1.0,
                                    clones.clone_seeds(0, range(2), 3, forward_backward.NOISING))
    clone = forward_backward.noised(torch.zeros(2, 1, 2, 2), 1.0, clones.clone_seeds(0, range(2), 3, 0))
    assert noise.shape == (2, 1, 2, 2) and not torch.allclose(noise, clone)


# --------------------------------------------------------------------------------------------
# analyze --clones --classifier on the mixture: both class decisions against the exact reference.
# With the sign of <m, x0> as the class, two draws from p(x0 | y) agree with probability (1 + tanh^2)/2 and a final
# keeps its class from y = x0 + sigma z with probability (1 + tanh)/2, tanh of a + sqrt(a) z, a = |m|^2 / sigma^2;
# E tanh = E tanh^2 (Nishimori), so both fractions are the DC mode's decided fraction E tanh^2 and both markers its
# decision time log(1 + |m|^2 / a_half).


class SignClassifier(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.flatten(1).mean(1)
        return torch.stack([-mean, mean], 1)


def test_analyze_gives_both_class_decisions_at_the_exact_mixture_time(tmp_path):
    classifier, out = tmp_path / "sign.pt", tmp_path / "result.json"
    torch.jit.save(torch.jit.script(SignClassifier()), str(classifier))
    result = CliRunner().invoke(app, ["analyze", "--model", MIXTURE, "--steps", "30", "--samples", "400",
                                      "--clones", "6", "--classifier", str(classifier), "--bootstrap", "100",
                                      "--probe-samples", "1", "--directions", "1", "--quiet", "--out", str(out)])
    assert result.exit_code == 0, result.output
    doc = read_document(out)  # validated against the shipped schema
    block, markers = doc["clones"], doc["critical"]["markers"]
    fb = block["forward_backward"]
    assert len(fb["keep_rate"]) == len(fb["fraction"]) == len(block["branch_steps"]) == 6
    exact = np.array([mixture_decided(16.0, s) for s in block["sigma"]])
    assert np.abs(np.array(fb["fraction"]) - exact).max() < 0.15  # sampling error (N = 400) and the sampler's
    assert np.abs(np.array(block["class_fraction"]) - exact).max() < 0.15
    assert fb["keep_rate"][-1] == pytest.approx(1.0, abs=0.02)  # from small t a final keeps its class
    exact_t = math.log1p(16.0 / MIXTURE_HALF_DECIDED_A)
    for name in (MARKER, MARKER_FB):
        low, high = markers[name]["ci95"]
        assert low <= exact_t <= high and markers[name]["t"] == pytest.approx(exact_t, abs=0.3), (name, markers[name])
    assert doc["critical"]["primary"] not in (MARKER, MARKER_FB)
    assert doc["timing"]["forward_backward_s"] > 0
