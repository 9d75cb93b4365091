"""``diffcrit reproduce`` (docs/reproduce.md): the verdict rules (pure), the jump of the correlation length on the
exact references (docs/design.md §4a), claims from real runs with a prediction injected to fail, the document's
schema, and the CLI on a tiny model folder."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest

from diffcrit.analysis.estimators import ginzburg_landau_fit
from diffcrit.analysis.jump import JUMP_FACTOR, JUMP_RESOLUTION, correlation_jump, gap_around, largest_rise
from diffcrit.errors import UserError
from diffcrit.frame import karras_sigmas, sigma_to_t
from diffcrit.models.builtins.analytic import GaussianField
from diffcrit.models.builtins.patch import PatchModel
from diffcrit.report.document import KIND_REPRODUCE, validate_document
from diffcrit.reproduction import battery, claims
from diffcrit.reproduction.verdicts import (CONFIRMED, INCONCLUSIVE, REFUTED, verdict_above, verdict_below,
                                         verdict_bracketed, verdict_coincide, verdict_overlap, verdict_within)
from diffcrit.spectral.fourier import plane_wave_directions

from cli_checks import run


# --- verdict rules: every path ------------------------------------------------------------------------------

def test_within_confirms_refutes_and_is_inconclusive():
    """An equivalence test: the whole interval within prediction ± tol confirms, wholly outside refutes, across the
    edge is inconclusive — so a wider interval never turns a refutation into a confirmation."""
    assert verdict_within(3.05, [3.0, 3.1], 3.05, 0.06)[0] == CONFIRMED  # [3.0, 3.1] inside [2.99, 3.11]
    verdict, reason = verdict_within(3.05, [3.0, 3.1], 3.2, 0.03)
    assert verdict == REFUTED and "by 0.07" in reason
    verdict, reason = verdict_within(3.05, [3.0, 3.1], 3.12, 0.03)  # [3.09, 3.15] holds part of the interval
    assert verdict == INCONCLUSIVE and "more samples" in reason
    assert verdict_within(3.05, None, 3.05 * 1.009, 0.01 * 3.05)[0] == CONFIRMED  # no interval: the value
    assert verdict_within(None, None, 3.0, 0.1, missing="did not soften") == (INCONCLUSIVE, "did not soften")
    assert verdict_within(1.0, [0.9, 1.1], None, 0.1)[0] == INCONCLUSIVE
    # the quick battery's textures class decision: 0.82 [0.45, 1.17] against 1.53 ± 0.5 reaches within and beyond
    assert verdict_within(0.8163, [0.447, 1.172], 1.533, 0.5)[0] == INCONCLUSIVE
    for width in (0.1, 0.5, 2.0, 10.0):  # widening an interval around a value far off never confirms
        assert verdict_within(0.0, [-width, width], 3.0, 0.5)[0] != CONFIRMED


def test_bracketed_holds_or_misses_the_prediction():
    assert verdict_bracketed(2.187, [2.108, 2.345], 2.192, 0.022)[0] == CONFIRMED
    verdict, reason = verdict_bracketed(2.187, [2.108, 2.345], 3.192, 0.022)
    assert verdict == REFUTED and "by 0.825" in reason
    assert verdict_bracketed(None, None, 2.0, 0.1)[0] == INCONCLUSIVE


def test_above_below_and_overlap():
    assert verdict_above(0.1, [0.06, 0.15], 0.015, "excess")[0] == CONFIRMED
    assert verdict_above(-0.01, [-0.02, 0.0], 0.015, "excess")[0] == REFUTED
    assert verdict_above(0.01, [-0.02, 0.04], 0.015, "excess")[0] == INCONCLUSIVE
    assert verdict_below(0.0, [-0.01, 0.01], 0.015, 0.05, "excess")[0] == CONFIRMED
    assert verdict_below(0.1, [0.06, 0.15], 0.015, 0.05, "excess")[0] == REFUTED
    assert verdict_below(0.0, [-0.01, 0.08], 0.015, 0.05, "excess")[0] == INCONCLUSIVE
    assert verdict_overlap(1.5, [1.0, 1.6], 1.45, [1.3, 1.6])[0] == CONFIRMED
    assert verdict_overlap(0.03, [0.01, 0.05], 0.58, [0.51, 0.69])[0] == REFUTED
    assert verdict_overlap(None, None, 0.58, [0.51, 0.69])[0] == INCONCLUSIVE


def test_coincide():
    agree = {"a": (1.0, [0.8, 1.2]), "b": (1.1, [1.0, 1.5])}
    assert verdict_coincide(agree)[0] == CONFIRMED
    assert verdict_coincide({**agree, "c": (3.0, [2.9, 3.1])})[0] == REFUTED
    assert verdict_coincide({**agree, "c": None})[0] == INCONCLUSIVE
    assert verdict_coincide({"a": (1.0, [0.8, 1.2]), "c": None})[0] == INCONCLUSIVE


# --- the jump on the exact references -----------------------------------------------------------------------

def _exact_xi_eq(model, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """t and the exact xi_eq at y = 0 (the model's theory stiffness, analyze's 4 shells and GL fit) on a Karras grid."""
    sigmas = karras_sigmas(steps, 0.002, 80.0, 7.0).tolist()
    directions = plane_wave_directions(model.shape, 4, 2)
    stiffness = np.array(model.theory(sigmas, directions)["stiffness"])
    k2 = np.array([float(directions.k2[directions.shell == n].mean()) for n in range(4)])
    _, _, xi_eq = ginzburg_landau_fit(stiffness, k2, np.array(sigmas))
    return np.array([sigma_to_t(s) for s in sigmas]), xi_eq


@pytest.mark.parametrize("p", [3, 5, 7])
def test_patch_xi_eq_jumps_at_its_critical_time(p):
    model = PatchModel(p=p)
    t_c = model.theory([1.0], plane_wave_directions(model.shape, 4, 2))["critical_t"]
    t, xi = _exact_xi_eq(model, 400)
    jump = correlation_jump(t, xi)
    assert jump is not None and jump.factor >= JUMP_FACTOR
    assert jump.ci95[0] <= t_c <= jump.ci95[1] and jump.ci95[1] - jump.ci95[0] < 0.4
    assert abs(jump.t - t_c) < 0.06  # xi_eq diverges where the GL fit's s0 vanishes, near the DC mode's zero


def test_gaussian_xi_eq_does_not_jump():
    t, xi = _exact_xi_eq(GaussianField(), 400)
    assert np.isfinite(xi).sum() > 100
    assert correlation_jump(t, xi) is None
    assert largest_rise(t, xi) < 1.5  # far from a doubling within the window


def test_jump_needs_resolution_and_order_does_not_matter():
    t = np.linspace(4.0, 2.0, 9)  # 0.25 apart: coarser than JUMP_RESOLUTION
    xi = 1 / np.sqrt(np.abs(t - 3.1))  # a divergence between probed points
    assert gap_around(t, 3.1) == pytest.approx(0.25) and gap_around(t, 3.1) > JUMP_RESOLUTION
    shuffled = np.random.default_rng(0).permutation(len(t))
    assert correlation_jump(t[shuffled], xi[shuffled]) == correlation_jump(t, xi)


# --- claims from real runs: confirmed, and refuted with a wrong prediction injected -------------------------

@pytest.fixture(scope="module")
def patch_run(tmp_path_factory):
    settings = dataclasses.replace(battery.QUICK, patch_steps=200, patch_samples=2)
    runner = battery.Runner(settings, tmp_path_factory.mktemp("reproduce"), battery.ignore, None)
    return battery.patch_claims(runner, 3)


def test_patch_claims_confirmed_with_commands(patch_run):
    softening, jump = patch_run
    assert softening.id == "patch-p3-softening" and softening.verdict == CONFIRMED, softening.reason
    assert abs(softening.measured - softening.prediction) <= 0.01 * softening.prediction
    assert jump.verdict == CONFIRMED, jump.reason
    assert softening.commands[0] == "diffcrit predict --data 'builtin:patch?p=3' --patch 3"
    assert "--linearize-at zero --steps 200" in softening.commands[1]
    assert softening.settings["analyze"]["linearize_at"] == "zero"


def test_patch_claims_refuted_by_a_wrong_prediction(tmp_path):
    model = "builtin:patch?p=3&L=16"
    from diffcrit import analyze

    result = analyze(model, linearize_at="zero", steps=200, samples=2, bootstrap=0).to_dict()
    truth = result["theory"]["critical_t"]
    assert claims.patch_softening(3, result, truth, [], {}).verdict == CONFIRMED
    wrong = claims.patch_softening(3, result, truth * 1.05, [], {})
    assert wrong.verdict == REFUTED and "outside" in wrong.reason
    assert claims.patch_jump(3, result, truth + 1.0, [], {}).verdict == REFUTED


def test_jump_claim_inconclusive_on_a_coarse_grid():
    steps = [{"t": t, "xi_eq": 1 / math.sqrt(abs(t - 3.1))} for t in np.linspace(4.0, 2.0, 5)]
    claim = claims.patch_jump(5, {"steps": steps}, 3.1, [], {})
    assert claim.verdict == INCONCLUSIVE and "apart" in claim.reason


def test_transition_and_control_claims_read_every_shell():
    shells = [{"shell": 0, "value": 0.0, "ci95": [-0.001, 0.001], "margin": 0.015},
              {"shell": 1, "value": 0.1, "ci95": [0.06, 0.15], "margin": 0.015}]
    result = {"transition": shells}
    assert claims.transition_evidence("m", result, [], {}).verdict == CONFIRMED
    assert claims.negative_control("m", result, [], {}).verdict == REFUTED
    quiet = {"transition": [shells[0]]}
    assert claims.negative_control("m", quiet, [], {}).verdict == CONFIRMED
    assert claims.transition_evidence("m", quiet, [], {}).verdict == REFUTED
    assert claims.transition_evidence("m", {}, [], {}).verdict == INCONCLUSIVE
    overshoot = {"transition": [{**shells[0], "value": None, "ci95": None}], "steps": [{}] * 4,
                 "diagnostics": {"total_variance": {"limit": 1.25, "inconsistent_steps": [0, 1, 2]}}}
    claim = claims.transition_evidence("m", overshoot, [], {})
    assert claim.verdict == INCONCLUSIVE and "3 of 4 steps" in claim.reason


def _shipped(name: str) -> dict:
    return json.loads((Path(__file__).resolve().parents[1] / "examples" / "results" / f"{name}.json").read_text())


def test_guidance_claims_on_the_shipped_n500_runs():
    """The shipped guide runs (n = 500): digits' sweep peaks at its t_c and the critical block wins; textures' sweep
    peaks at the end of the run, far from its t_c."""
    digits, textures = _shipped("digits-analyze-transition"), _shipped("textures-analyze-transition")
    peak = claims.guidance_peak("digits", _shipped("digits-guide-sweep6-n500"), digits, [], {})
    assert peak.verdict == CONFIRMED and peak.prediction == digits["critical"]["t"], peak.reason
    assert peak.ci95[0] <= peak.measured <= peak.ci95[1]
    assert claims.guidance_peak("textures", _shipped("textures-guide-sweep6-n500"), textures, [], {}).verdict == REFUTED
    block = claims.guidance_block("digits", _shipped("digits-guide-unconditional-n500"), [], {})
    assert block.verdict == CONFIRMED and "n = 500 pairs" in block.reason
    assert claims.guidance_block("digits", {"comparisons": []}, [], {}).verdict == INCONCLUSIVE
    unscored = {"sweep": {"peak": None, "profile": []}}
    assert claims.guidance_peak("digits", unscored, digits, [], {}).verdict == INCONCLUSIVE


def test_speciation_claim():
    result = _shipped("digits-analyze-transition")
    decision = result["critical"]["markers"]["decision"]["t"]
    near = claims.speciation("digits", {"speciation": {"t": decision + 0.3}}, result, "decision", [], {})
    far = claims.speciation("digits", {"speciation": {"t": decision + 2.0}}, result, "decision", [], {})
    missing = claims.speciation("digits", {"speciation": {"t": 1.0}}, result, "class_decision", [], {})
    assert (near.verdict, far.verdict, missing.verdict) == (CONFIRMED, REFUTED, INCONCLUSIVE)
    assert near.id == "digits-speciation-decision" and missing.id == "digits-speciation-class-decision"


# --- the document -------------------------------------------------------------------------------------------

def test_document_validates_and_renders(patch_run, tmp_path):
    from diffcrit.reproduction.figure import claims_figure_bytes
    from diffcrit.report.document import read_document, write_document
    from diffcrit.reproduction.table import markdown

    rows = [*patch_run, claims.unavailable("tiny", claims.GUIDANCE_PEAK, "no classifier")]
    doc = battery.document(rows, {"models": ["tiny"], "quick": True, "settings": {}}, True, {"total_s": 1.0})
    from jsonschema.validators import validator_for

    from diffcrit.report.document import schema

    validator_for(schema(KIND_REPRODUCE)).check_schema(schema(KIND_REPRODUCE))  # a valid JSON Schema itself
    assert validate_document(json.loads(json.dumps(doc)), KIND_REPRODUCE) == KIND_REPRODUCE
    for shipped in ("quick", "full"):  # the runs in examples/results
        assert validate_document(_shipped(f"reproduce-{shipped}"), KIND_REPRODUCE) == KIND_REPRODUCE
    write_document(doc, tmp_path / "r.json")
    assert read_document(tmp_path / "r.json", KIND_REPRODUCE)["claims"][0]["id"] == "patch-p3-softening"
    with pytest.raises(UserError, match="not an analyze result"):
        read_document(tmp_path / "r.json")  # a reproduce document is no analyze result
    assert doc["summary"] == {"confirmed": 2, "refuted": 0, "inconclusive": 1} and doc["power"] == "reduced"
    text = markdown(doc)
    assert "| patch-p3-softening |" in text and "**inconclusive** | no classifier |" in text
    assert claims_figure_bytes(doc, "png")[:4] == b"\x89PNG"
    doc["claims"][0]["verdict"] = "maybe"
    with pytest.raises(UserError, match="reproduce result schema"):
        validate_document(doc, KIND_REPRODUCE)


# --- the CLI on a local diffusers folder --------------------------------------------------------------------

def test_cli_model_folder_runs_the_model_claims(ddpm_folder, tmp_path, monkeypatch):
    tiny = battery.Settings(patch_steps=20, patch_samples=2, steps=8, samples=8, bootstrap=20, clones=2,
                            guide_steps=8, guide_samples=4, sweep=4, guide_bootstrap=20)
    monkeypatch.setattr(battery, "QUICK", tiny)
    monkeypatch.setattr(battery, "PATCH_SIDES", (3,))
    out, report = tmp_path / "r.json", tmp_path / "r.md"
    result = run("reproduce", "--model", ddpm_folder, "--quick", "--quiet", "--out", out, "--report", report,
                 "--seed", "64")  # another sample range: every run starts at seed 64, and its commands say so
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    by_id = {c["id"]: c for c in doc["claims"]}
    name = ddpm_folder.name
    assert {f"{name}-transition", f"{name}-coincidence", "gaussian-no-transition"} <= set(by_id)
    assert by_id[f"{name}-transition"]["commands"][0].startswith(f"diffcrit analyze --model {ddpm_folder}")
    assert doc["config"]["seed"] == 64 and "--seed 64" in by_id[f"{name}-transition"]["commands"][0]
    assert by_id["gaussian-no-transition"]["settings"]["analyze"]["seed"] == 64
    for key, why in ((claims.GUIDANCE_PEAK, "no classifier"), (claims.GUIDANCE_BLOCK, "no classifier"),
                     ("speciation-decision", "no data"), ("speciation-class-decision", "no data")):
        assert by_id[f"{name}-{key}"]["verdict"] == INCONCLUSIVE and why in by_id[f"{name}-{key}"]["reason"]
    assert doc["config"]["quick"] and doc["power"] == "reduced" and "timing" in doc
    assert f"| {name}-transition |" in report.read_text()


def test_cli_refuses_an_output_inside_the_model_folder(ddpm_folder):
    result = run("reproduce", "--model", ddpm_folder, "--quick", "--out", ddpm_folder / "r.json")
    assert result.exit_code == 2 and "inside" in result.output


def test_python_api_is_the_battery():
    import diffcrit

    assert diffcrit.reproduce is battery.reproduce and "reproduce" in diffcrit.__all__
