"""The auto probe schedule finds the critical time dense probing finds, without sampling again."""

import json

import numpy as np
import pytest

import diffcrit
from diffcrit.report.view import Critical
from diffcrit.analysis import detection
from diffcrit.analysis import probe_schedule as schedule
from cli_checks import run


def _on(values, probed):
    known = np.full(len(values), np.nan)
    known[sorted(probed)] = 0.0
    return values + known


def _markers(t, s_low, xi_eq, unstable, probed):
    on = lambda v: _on(v, probed)  # noqa: E731
    markers = detection.find_markers(t, on(s_low), on(xi_eq), np.full(len(t), np.nan), unstable=on(unstable))
    return markers, detection.find_brackets(t, on(s_low), on(xi_eq), on(unstable), markers)


def _refined(s_low, xi_eq, unstable, regime):
    """Run the auto schedule on known dense curves: coarse grid, then refinement until it stops."""
    probed = set(schedule.grid(len(s_low), schedule.coarse_stride(len(s_low), regime)))
    while True:
        todo = schedule.refinement(sorted(probed), _on(s_low, probed), _on(xi_eq, probed), _on(unstable, probed),
                                   schedule.REFINED[regime])
        if not todo:
            return sorted(probed)
        probed |= todo


PROBE_BASED = (detection.INSTABILITY_ONSET, detection.STIFFNESS_ZERO, detection.STIFFNESS_MIN, detection.XI_EQ_PEAK)


@pytest.mark.parametrize("regime", ["trajectory", "zero"])
@pytest.mark.parametrize("seed", range(40))
def test_refinement_reproduces_dense_refined_markers_and_brackets_the_others(seed, regime):
    """A dip of s(k=0) (crossing or not), a bump of xi_eq and an instability onset anywhere: each marker the
    regime refines equals dense probing's (along trajectories a dip below 0 narrower than the sparse stride
    may be missed, never misplaced); every other one found has the dense value inside its bracket."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(20, 200))
    t = np.linspace(6.0, 0.0, n)
    centre, width = rng.uniform(0.5, 5.5), rng.uniform(0.6, 2.0)
    s_low = 1.0 - rng.uniform(0.3, 1.5) * np.exp(-((t - centre) / width) ** 2)
    xi_eq = 1.0 + rng.uniform(1, 5) * np.exp(-((t - centre - rng.uniform(-0.3, 0.3)) / width) ** 2)
    unstable = np.where(t < rng.uniform(0.5, 5.5), rng.uniform(0.1, 1.0, n), 0.0)
    probed = _refined(s_low, xi_eq, unstable, regime)
    auto, brackets = _markers(t, s_low, xi_eq, unstable, probed)
    dense, _ = _markers(t, s_low, xi_eq, unstable, range(n))
    assert dense[detection.INSTABILITY_ONSET] is not None
    for name in PROBE_BASED:
        if name in schedule.REFINED[regime]:
            missed = regime == "trajectory" and name == detection.STIFFNESS_ZERO and auto[name] is None
            assert auto[name] == dense[name] or missed, name
        elif auto[name] is not None and dense[name] is not None:
            low, high = sorted(brackets[name])
            assert low <= dense[name] <= high, name
    assert len(probed) < (0.5 if regime == "zero" else 0.3) * n or n < 40


def test_no_refinement_of_a_flat_stiffness_curve_or_a_one_point_xi_eq():
    n = 50
    probed = sorted(schedule.grid(n, 5))
    rng = np.random.default_rng(0)
    s_low, xi_eq = np.full(n, np.nan), np.full(n, np.nan)
    s_low[probed] = 2e-4 + 2e-4 * rng.standard_normal(len(probed)).clip(-0.9, 0.9)  # round-off, never below -res
    xi_eq[n - 1] = 0.5  # defined at the last step only
    assert schedule.refinement(probed, s_low, xi_eq) == set()
    s_low[20] = -2e-3  # a resolved dip (and crossing): refined on both sides at y = 0, the crossing only else
    assert {17, 18, 22, 23} & schedule.refinement(probed, s_low, xi_eq)
    assert schedule.refinement(probed, s_low, xi_eq, markers=schedule.REFINED["trajectory"]) == {17}


def test_coarse_stride_is_chosen_from_the_step_count():
    assert [schedule.coarse_stride(s) for s in (2, 12, 24, 50, 100, 1000)] == [2, 3, 6, 13, 25, 250]
    assert [schedule.coarse_stride(s, "zero") for s in (2, 12, 24, 50, 100, 1000)] == [2, 2, 2, 5, 9, 84]
    assert schedule.grid(10, 4) == {0, 4, 8, 9}


def _critical(model, **options):
    doc = diffcrit.analyze(model, **options).to_dict()
    return doc, doc["critical"]


@pytest.mark.parametrize("spec,options", [
    ("builtin:mixture?size=16", dict(steps=40, samples=8)),
    ("builtin:mixture?size=16&m2=9", dict(steps=40, samples=4, linearize_at="zero")),
])
def test_auto_matches_dense_on_the_mixture(spec, options):
    dense, dense_c = _critical(spec, probe_schedule="every", bootstrap=50, **options)
    auto, auto_c = _critical(spec, probe_schedule="auto", bootstrap=50, **options)
    # 8 samples evidence no transition along trajectories: the decision time is the time both work with
    dense_t, auto_t = (Critical.from_document(c).working_time() for c in (dense_c, auto_c))
    assert dense_t is not None and auto_t is not None and dense_c["found"] == auto_c["found"]
    refined = schedule.REFINED[options.get("linearize_at", "trajectory")]
    for name, marker in auto_c["markers"].items():
        dense_marker = dense_c["markers"][name]
        if name in PROBE_BASED and name not in refined:  # read off the coarse steps: dense value in the interval
            if marker is not None and dense_marker is not None:
                assert marker["ci95"][0] - 1e-9 <= dense_marker["t"] <= marker["ci95"][1] + 1e-9, name
        else:  # from the same adjacent steps (decision and xi_growth need no probes)
            assert marker == dense_marker, name
    lo, hi = dense_t.ci95 or (dense_t.t, dense_t.t)
    assert lo - 1e-9 <= auto_t.t <= hi + 1e-9
    assert auto["probe"]["probed_steps"] < 0.6 * dense["probe"]["probed_steps"]
    schedule_block = auto["probe"]["schedule"]
    assert schedule_block["mode"] == "auto" and schedule_block["coarse_stride"] == \
        schedule.coarse_stride(40, options.get("linearize_at", "trajectory"))
    probed = [s["index"] for s in auto["steps"] if s["probed"]]
    for step, dense_step in zip(auto["steps"], dense["steps"], strict=True):  # probed steps carry the dense values
        if step["probed"]:
            np.testing.assert_allclose(step["stiffness"], dense_step["stiffness"], rtol=0, atol=1e-12)
    assert set(schedule_block["refined_steps"]) <= set(probed)


def test_auto_matches_dense_on_a_small_trained_unet():
    """builtin:digits (a trained 1.1M-parameter UNet; a random tiny UNet has no critical point to find)."""
    options = dict(steps=24, samples=6, probe_samples=2, directions=2, shells=3, device="cpu", bootstrap=50)
    dense, dense_c = _critical("builtin:digits", probe_schedule="every", **options)
    auto, auto_c = _critical("builtin:digits", probe_schedule="auto", **options)
    np.testing.assert_array_equal(np.array([s["xi_denoised"] for s in auto["steps"]], dtype=float),
                                  np.array([s["xi_denoised"] for s in dense["steps"]], dtype=float))
    dense_t, auto_t = (Critical.from_document(c).working_time() for c in (dense_c, auto_c))
    assert dense_t is not None and auto_t is not None and dense_c["found"] == auto_c["found"]
    lo, hi = dense_t.ci95 or (dense_t.t, dense_t.t)
    assert lo - 1e-9 <= auto_t.t <= hi + 1e-9
    assert auto["probe"]["probed_steps"] < dense["probe"]["probed_steps"]


def test_auto_does_not_change_the_trajectory(ddpm_folder, tmp_path):
    options = dict(steps=8, samples=3, probe_samples=2, directions=1, shells=2, device="cpu", bootstrap=0)
    every = diffcrit.analyze(str(ddpm_folder), probe_schedule="every", **options)
    auto = diffcrit.analyze(str(ddpm_folder), probe_schedule="auto", save_states=tmp_path / "s.npy", **options)
    np.testing.assert_array_equal(every.samples.numpy(), auto.samples.numpy())
    assert np.load(tmp_path / "s.npy").shape == (8, 2, 3, 1, 8, 8)


def test_cli_probe_schedule_option():
    base = ["analyze", "--model", "builtin:mixture?size=8", "--steps", "12", "--samples", "2", "--bootstrap", "0",
            "--quiet"]
    ok = run(*base, "--probe-schedule", "auto")
    assert ok.exit_code == 0, ok.output
    doc = json.loads(ok.stdout)
    assert doc["config"]["probe_schedule"] == "auto" and doc["probe"]["schedule"]["mode"] == "auto"
    bad = run(*base, "--probe-schedule", "sometimes")
    assert bad.exit_code == 2 and "'--probe-schedule': 'sometimes' is not one of 'auto', 'every'" in bad.output
