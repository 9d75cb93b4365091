"""One random-sign combination per shell (docs/design.md §3): unbiased for the per-direction shell mean, exactly, on
the references; seeded per (seed, record, point); the default probes a share of the samples; the budget is counted."""

import itertools
import math

import numpy as np
import pytest
import torch

import diffcrit
from diffcrit.config import make_config
from diffcrit.analysis import estimators
from diffcrit.models.builtins.analytic import GaussianField, TwoPointMixture, mixture_unstable_share
from diffcrit.probing.hutchinson import point_tangents, shell_signs, shell_tangents
from diffcrit.probing.probes import mode_gains
from diffcrit.spectral.fourier import plane_wave_directions


def _bound(model, sigma):
    return lambda z, rows: model(z, torch.full((len(z),), sigma))


def _per_direction_means(model, point, directions, sigma):
    """(K,) the per-direction shell means <u_m, J u_m> at one point (forward AD)."""
    gains = mode_gains(_bound(model, sigma), point, directions.vectors, "jvp", 5e-3, sigma, 64)[0]
    return np.array([float(gains[directions.shell == n].mean()) for n in range(directions.n_shells)])


def _every_pattern(model, point, directions, sigma, n):
    """Shell n's gain <v, J v> for each of the 2^M_n sign patterns of its directions."""
    chosen = (directions.shell == n).numpy()
    values = []
    for pattern in itertools.product((-1.0, 1.0), repeat=int(chosen.sum())):
        signs = np.ones(directions.count)
        signs[chosen] = pattern
        tangents = shell_tangents(directions, signs)[None]  # (1, K, C, H, W)
        values.append(float(mode_gains(_bound(model, sigma), point, tangents, "jvp", 5e-3, sigma, 64)[0, n]))
    return np.array(values)


def test_combinations_are_unit_vectors_in_the_shell_span():
    directions = plane_wave_directions((3, 8, 8), 4, 3)
    tangents = shell_tangents(directions, shell_signs(0, 5, 1, directions.count)).double()
    flat, basis = tangents.flatten(1), directions.vectors.double().flatten(1)
    torch.testing.assert_close(flat.norm(dim=1), torch.ones(4, dtype=torch.float64))
    coefficients = flat @ basis.T  # (K, M): only the shell's own directions, each ±1/sqrt(M_n)
    for n in range(4):
        own = directions.shell == n
        assert torch.allclose(coefficients[n, ~own], torch.zeros(1, dtype=torch.float64), atol=1e-6)
        torch.testing.assert_close(coefficients[n, own].abs(), torch.full((int(own.sum()),), 1 / math.sqrt(own.sum()),
                                                                            dtype=torch.float64), atol=1e-6, rtol=0)


def test_every_sign_pattern_is_exact_on_the_gaussian_field():
    """J is diagonal in the plane-wave basis (cos and sin of one k share an eigenvalue): no cross terms."""
    model, sigma = GaussianField(size=8, channels=2, xi=2.0), 1.3
    directions = plane_wave_directions(model.shape, 4, 3)
    point = torch.randn(1, *model.shape, generator=torch.Generator().manual_seed(0))
    exact = _per_direction_means(model, point, directions, sigma)
    assert np.ptp(exact) > 0.05  # the shells differ: a mix-up of shells would show
    for n in range(4):
        np.testing.assert_allclose(_every_pattern(model, point, directions, sigma, n), exact[n], atol=2e-6)


@pytest.mark.parametrize("y_scale", [0.0, 0.7])
def test_mean_over_sign_patterns_is_the_per_direction_mean_on_the_mixture(y_scale):
    """Three channels of one constant mean: J = m m^T / sigma^2 (y = 0) couples the channels' DC modes, so single
    patterns are off (3a and a/3 for a per-direction mean a), and their mean over all 2^3 is exact."""
    model, sigma = TwoPointMixture(size=4, channels=3, m2=4.0), 1.5
    directions = plane_wave_directions(model.shape, 2, 2)
    point = y_scale * torch.randn(1, *model.shape, generator=torch.Generator().manual_seed(1))
    exact = _per_direction_means(model, point, directions, sigma)
    if y_scale == 0:
        assert exact[0] == pytest.approx(model.m2 / 3 / sigma**2, rel=1e-6)  # each DC channel holds m2 / 3
    patterns = _every_pattern(model, point, directions, sigma, 0)
    assert patterns.mean() == pytest.approx(exact[0], rel=1e-6, abs=1e-7)
    assert np.abs(patterns - exact[0]).max() > 0.5 * exact[0]  # cross terms: one pattern alone is not the mean


def test_signs_depend_on_seed_step_and_point_only():
    assert np.array_equal(shell_signs(3, 7, 2, 9), shell_signs(3, 7, 2, 9))
    draws = {tuple(shell_signs(*key, 9)) for key in [(3, 7, 2), (4, 7, 2), (3, 8, 2), (3, 7, 3)]}
    assert len(draws) == 4 and set(np.concatenate([list(d) for d in draws])) == {-1.0, 1.0}
    directions = plane_wave_directions((1, 8, 8), 3, 2)
    both = point_tangents(directions, 3, 7, range(4))
    torch.testing.assert_close(both[2:], point_tangents(directions, 3, 7, range(2, 4)))  # any split of the points


def test_hutchinson_run_matches_the_gaussian_theory_and_leaves_sampling_alone():
    """builtin:gaussian: every pattern exact, so both shell gains give the theory's stiffness; the samples and the
    decided fraction do not depend on how J is probed."""
    options = dict(steps=8, samples=6, probe_samples=3, bootstrap=0, probe_schedule="every")
    runs = {mode: diffcrit.analyze("builtin:gaussian?size=8&channels=2", shell_gain=mode, **options).to_dict()
            for mode in ("hutchinson", "directions")}
    stiff = {mode: np.array([s["stiffness"] for s in run["steps"]]) for mode, run in runs.items()}
    np.testing.assert_allclose(stiff["hutchinson"], stiff["directions"], atol=1e-5)
    np.testing.assert_allclose(stiff["hutchinson"], np.array(runs["hutchinson"]["theory"]["stiffness"]), atol=1e-5)
    assert [s["decided"] for s in runs["hutchinson"]["steps"]] == [s["decided"] for s in runs["directions"]["steps"]]
    points = np.array(runs["hutchinson"]["steps"][0]["point_stiffness"])
    assert points.shape == (3, 4)
    budget = {mode: run["probe"]["budget"] for mode, run in runs.items()}
    per_point = {"hutchinson": 4, "directions": 2 + 3 * 2}  # K shells, or M = 2 DC + 2 per shell in shells 1-3
    for mode, run in runs.items():
        assert run["probe"]["shell_gain"] == mode
        assert budget[mode]["probing_forwards"] == 8 * 3 * per_point[mode]  # 8 probed steps; JVP: 1 per vector
        assert budget[mode]["sampling_forwards"] == 6 * 8


def test_default_probe_points_are_a_share_of_the_samples():
    assert make_config().probe_samples == 16  # 128 // 8
    assert make_config(samples=40).probe_samples == 5
    assert make_config(samples=10).probe_samples == 2
    assert make_config(samples=1).probe_samples == 1
    assert make_config(samples=40, probe_samples=7).probe_samples == 7
    assert make_config().shell_gain == "hutchinson"
    with pytest.raises(diffcrit.UserError, match="shell_gain"):
        make_config(shell_gain="trace")


def test_fraction_interval_and_detectable_share():
    assert estimators.fraction_ci95(0, 16) == (0.0, pytest.approx(1 - 0.025 ** (1 / 16)))
    assert estimators.fraction_ci95(16, 16) == (pytest.approx(0.025 ** (1 / 16)), 1.0)
    low, high = estimators.fraction_ci95(4, 16)  # Clopper–Pearson, 4 of 16: 0.0727 .. 0.5238
    assert (round(low, 4), round(high, 4)) == (0.0727, 0.5238)
    assert estimators.detectable_fraction(16) == pytest.approx(0.0956, abs=1e-4)
    assert 1 - (1 - estimators.detectable_fraction(16)) ** 16 == pytest.approx(0.8)


def test_instability_block_on_the_mixture():
    """The mixture's DC shell (one channel: one direction, so the combination is exact) turns unstable along
    trajectories: the block reports a peak share with an interval and where it is."""
    result = diffcrit.analyze("builtin:mixture?size=8", steps=24, samples=64, bootstrap=0,
                              probe_schedule="every").to_dict()
    block = result["instability"]
    assert block["probe_points"] == 8 and result["config"]["probe_samples"] == 8
    assert block["peak_fraction"][0] > 0 and block["peak_step"][0] is not None
    low, high = block["peak_ci95"][0]
    assert low < block["peak_fraction"][0] < high or block["peak_fraction"][0] == 1.0
    assert block["peak_fraction"][1:] == [0.0, 0.0, 0.0] and block["peak_step"][1:] == [None, None, None]
    assert block["detectable_fraction"] == pytest.approx(1 - 0.2 ** (1 / 8))
    assert block["onset_found"] == (result["critical"]["markers"]["instability_onset"] is not None) is True


def test_the_per_step_unstable_interval_is_clopper_pearson_and_holds_the_exact_share():
    """Per probed step, ``unstable_fraction_ci95`` is the Clopper–Pearson interval of the count of unstable probe
    trajectories (also without a bootstrap) and, on the mixture, holds the exact unstable share where it is resolved;
    a bootstrap over the points collapses to [0, 0] at none unstable."""
    doc = diffcrit.analyze("builtin:mixture?size=8", steps=100, samples=48, probe_samples=48, probe_schedule="every",
                           probe_every=5, directions=1, bootstrap=0, cache=False).to_dict()
    depth, held, resolved = doc["instability"]["depth"], 0, 0
    for step in (s for s in doc["steps"] if s["probed"]):
        for fraction, band in zip(step["unstable_fraction"], step["unstable_fraction_ci95"], strict=True):
            assert band == pytest.approx(list(estimators.fraction_ci95(round(fraction * 48), 48)))
            assert band[1] > band[0]  # an interval at 0 and at 48 of 48 too
        exact = mixture_unstable_share(16.0 / step["sigma"] ** 2, depth)
        # from 0.05 up: below, the sampler's bias at the class boundary exceeds the binomial error (256 trajectories
        # at 100 steps: 0.039 unstable at sigma 1.5 where the exact marginal has 0.020)
        if exact >= 0.05:
            resolved += 1
            low, high = step["unstable_fraction_ci95"][0]
            held += low <= exact <= high
    assert resolved >= 2 and held == resolved
    zero = diffcrit.analyze("builtin:mixture?size=8", steps=12, samples=4, linearize_at="zero", bootstrap=0,
                            cache=False).to_dict()
    assert all(s["unstable_fraction_ci95"] is None for s in zero["steps"])  # one point at y = 0: no sample


def test_fraction_ci95_is_scipys_clopper_pearson():
    from scipy.stats import beta

    for unstable, points in ((0, 16), (3, 16), (16, 16), (1, 2)):
        low = 0.0 if unstable == 0 else beta.ppf(0.025, unstable, points - unstable + 1)
        high = 1.0 if unstable == points else beta.ppf(0.975, unstable + 1, points - unstable)
        assert estimators.fraction_ci95(unstable, points) == pytest.approx((low, high), abs=1e-12)
