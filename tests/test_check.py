"""`diffcrit check`: comparisons, tolerances, reports and the command's exit codes and messages."""

from __future__ import annotations

import copy
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

import diffcrit

from diffcrit.release.summary import render_junit, render_markdown
from diffcrit.analysis import detection
from diffcrit.release.checking import (CHECK_CRITICAL_FOUND, CHECK_CRITICAL_T, CHECK_XI_EQ, INDEPENDENT, PAIRED,
                                       STATUS_FAIL, STATUS_PASS, STATUS_SKIP, Tolerances, any_failed, compare_results,
                                       load_tolerances, marker_check_name, outcomes_to_dict, pairing,
                                       stiffness_check_name, tolerances_from_mapping, tolerances_schema)
from diffcrit.errors import UserError
from diffcrit.report.document import read_document
from cli_checks import one_line_error, run
from result_factory import make_analyze_result, make_guide_result, shifted, with_changes

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "diffcrit" / "report" / "schema" / "result.schema.json"


@pytest.fixture(scope="module")
def baseline() -> dict:
    return make_analyze_result(1.5)


def by_name(outcomes) -> dict:
    return {o.name: o for o in outcomes}


# -- the synthetic results are real results ---------------------------------------------------


def test_factory_results_are_schema_valid():
    import jsonschema

    schema = json.loads(SCHEMA.read_text())
    for doc in (make_analyze_result(1.5), make_analyze_result(0.8, probe_every=3, ci_halfwidth=None, noise=0.05)):
        jsonschema.validate(doc, schema)


def test_factory_curves_put_their_markers_where_the_document_says():
    """The detection code, run on the factory's own curves, finds the markers the factory wrote."""
    import numpy as np

    doc = make_analyze_result(2.2)
    t = np.array([step["t"] for step in doc["steps"]])
    decided = np.array([step["decided"][0] for step in doc["steps"]])
    s0 = np.array([step["stiffness"][0] for step in doc["steps"]])
    assert detection.decision(t, decided) == pytest.approx(doc["critical"]["t"], abs=0.01)
    assert detection.stiffness_zero(t, s0) == pytest.approx(doc["critical"]["markers"]["stiffness_zero"]["t"], abs=0.05)
    assert detection.stiffness_min(t, s0) == pytest.approx(2.2, abs=0.02)


# -- compare_results ---------------------------------------------------------------------------


def test_identical_candidate_passes_every_check(baseline):
    outcomes = compare_results(baseline, baseline)
    assert not any_failed(outcomes)
    off = {o.name for o in outcomes if o.status == STATUS_SKIP}
    markers = {marker_check_name(m) for m in baseline["critical"]["markers"]}
    assert off == {CHECK_XI_EQ, "xi.state"} | markers  # off by default
    assert all(o.status == STATUS_PASS for o in outcomes if o.name not in off)
    gated = compare_results(baseline, baseline, Tolerances(markers=0.5))
    assert all(o.status == STATUS_PASS for o in gated if o.name not in (CHECK_XI_EQ, "xi.state"))
    names = [o.name for o in outcomes]
    assert names[:2] == [CHECK_CRITICAL_FOUND, CHECK_CRITICAL_T]
    assert stiffness_check_name(0) in names and CHECK_XI_EQ in names
    assert by_name(outcomes)[CHECK_CRITICAL_T].measured == 0


def test_shifted_critical_time_is_caught(baseline):
    outcomes = by_name(compare_results(shifted(baseline, 0.5), baseline))
    assert outcomes[CHECK_CRITICAL_T].status == STATUS_FAIL
    assert outcomes[CHECK_CRITICAL_T].measured == pytest.approx(0.5)
    assert outcomes[stiffness_check_name(0)].status == STATUS_FAIL


def test_small_shift_within_tolerance_passes(baseline):
    outcomes = compare_results(shifted(baseline, 0.02), baseline)
    assert not any_failed(outcomes)


def reseeded(doc, seed):
    """The same document as if made from another sample range (an independent comparison)."""
    return with_changes(doc, config={**doc["config"], "seed": seed})


def test_wide_confidence_intervals_widen_the_allowed_shift_of_independent_results(baseline):
    def wide(doc):
        return with_changes(doc, critical={**doc["critical"], "ci95": [doc["critical"]["t"] - 0.7,
                                                                       doc["critical"]["t"] + 0.7]})
    cand, base = reseeded(wide(shifted(baseline, 0.9)), 16), wide(baseline)
    outcome = by_name(compare_results(cand, base, Tolerances()))[CHECK_CRITICAL_T]
    assert outcome.status == STATUS_PASS and outcome.tolerance == pytest.approx(0.7 * 2**0.5)
    strict = by_name(compare_results(cand, base, Tolerances(ci_scale=0.0)))[CHECK_CRITICAL_T]
    assert strict.status == STATUS_FAIL and strict.tolerance == Tolerances().critical_t
    # the same shift between two runs of one sample range: the CIs do not excuse it
    paired = by_name(compare_results(wide(shifted(baseline, 0.9)), base))[CHECK_CRITICAL_T]
    assert paired.status == STATUS_FAIL and paired.tolerance == Tolerances().paired_critical_t


def test_pairing_follows_the_sample_ranges(baseline):
    assert pairing(baseline, baseline)[0] == PAIRED
    kind, note = pairing(reseeded(baseline, 16), baseline)
    assert kind == INDEPENDENT and "disjoint sample ranges 16..31 and 0..15" in note
    kind, note = pairing(reseeded(baseline, 1), baseline)
    assert kind == INDEPENDENT and "share 15 samples" in note


def test_stiffness_check_is_bounded(baseline):
    """s ≈ -4e6 at y = 0 and tiny sigma must not dominate: the RMS runs over s/(1+|s|)."""
    def huge(doc, factor):
        steps = [{**st, "stiffness": [v * factor if v < 0 else v for v in st["stiffness"]] if st["stiffness"] else None}
                 for st in doc["steps"]]
        return with_changes(doc, steps=steps)
    outcome = by_name(compare_results(huge(baseline, 1e6), huge(baseline, 2e6)))[stiffness_check_name(0)]
    assert outcome.measured < 0.01


def test_decided_fraction_gap_is_caught_against_its_intervals(baseline):
    def lowered(doc, by):
        steps = [{**st, "decided": [v - by for v in st["decided"]]} for st in doc["steps"]]
        return with_changes(doc, steps=steps)
    independent = by_name(compare_results(reseeded(lowered(baseline, 0.3), 16), baseline))
    assert independent["decided.shell0"].status == STATUS_FAIL
    assert independent["decided.shell0"].measured == pytest.approx(-0.3)
    small = by_name(compare_results(reseeded(lowered(baseline, 0.2), 16), baseline))
    assert small["decided.shell0"].status == STATUS_PASS
    assert by_name(compare_results(lowered(baseline, 0.05), baseline))["decided.shell0"].status == STATUS_FAIL  # paired


def test_lost_critical_point_and_marker_fail(baseline):
    critical = {**baseline["critical"], "found": False, "t": None, "ci95": None,
                "markers": {**baseline["critical"]["markers"], "stiffness_zero": None}}
    outcomes = by_name(compare_results(with_changes(baseline, critical=critical), baseline, Tolerances(markers=0.5)))
    assert outcomes[CHECK_CRITICAL_FOUND].status == STATUS_FAIL
    # the critical time is compared as the decision time of both sides (the same here), and says so
    assert outcomes[CHECK_CRITICAL_T].status == STATUS_PASS and "decision times" in outcomes[CHECK_CRITICAL_T].detail
    no_decision = {**critical, "markers": {**critical["markers"], "decision": None}}
    lost = by_name(compare_results(with_changes(baseline, critical=no_decision), baseline, Tolerances(markers=0.5)))
    assert lost[CHECK_CRITICAL_T].status == STATUS_SKIP
    assert outcomes[marker_check_name("stiffness_zero")].status == STATUS_FAIL
    relaxed = compare_results(with_changes(baseline, critical=critical), baseline,
                              Tolerances(markers=0.5, marker_presence=False))
    assert by_name(relaxed)[marker_check_name("stiffness_zero")].status == STATUS_SKIP


def test_curves_compare_on_a_common_grid_across_step_counts(baseline):
    coarse = make_analyze_result(1.5, steps=25, probe_every=2)  # other grid, unprobed steps (null)
    outcomes = by_name(compare_results(coarse, baseline))
    assert outcomes[stiffness_check_name(0)].status == STATUS_PASS
    assert outcomes[stiffness_check_name(0)].measured < 0.05


def test_missing_stiffness_in_candidate_fails_and_null_tolerance_skips(baseline):
    steps = [{**step, "stiffness": None, "stiffness_sem": None} for step in baseline["steps"]]
    outcomes = by_name(compare_results(with_changes(baseline, steps=steps), baseline))
    assert outcomes[stiffness_check_name(0)].status == STATUS_FAIL
    assert "no values in the candidate" in outcomes[stiffness_check_name(0)].detail
    off = by_name(compare_results(with_changes(baseline, steps=steps), baseline, Tolerances(stiffness=None)))
    assert off[stiffness_check_name(0)].status == STATUS_SKIP


@pytest.mark.parametrize("change, message", [
    (lambda d: with_changes(d, schema_version=2), "schema_version 2"),
    (lambda d: with_changes(d, model={**d["model"], "shape": [4, 32, 32]}), "different model shapes"),
    (lambda d: with_changes(d, steps=[]), "steps needs at least 2 entries"),
    (lambda d: make_guide_result(), "guide result"),
])
def test_incompatible_results_are_user_errors(baseline, change, message):
    with pytest.raises(UserError, match=message):
        compare_results(change(baseline), baseline)


# -- tolerances --------------------------------------------------------------------------------


def test_example_yaml_documents_the_defaults():
    assert load_tolerances(ROOT / "examples" / "diffcrit.yaml") == Tolerances()
    assert load_tolerances(None) == Tolerances()


def test_tolerance_overrides_and_null_turns_a_check_off():
    tol = tolerances_from_mapping({"critical_t": 0.1, "xi_eq": None, "stiffness_shells": 2})
    assert (tol.critical_t, tol.xi_eq, tol.stiffness_shells) == (0.1, None, 2)


@pytest.mark.parametrize("data, message", [
    ({"critcal_t": 0.1}, "unknown key 'critcal_t'"),
    ({"critical_t": "wide"}, "critical_t must be a number >= 0 or null"),
    ({"critical_t": -1}, "critical_t must be a number >= 0 or null"),
    ({"stiffness": True}, "stiffness must be a number >= 0 or null"),
    ({"marker_presence": "yes"}, "marker_presence must be true or false"),
    ({"grid_points": 1}, "grid_points must be an integer >= 2"),
    ({"ci_scale": None}, "ci_scale must be a number >= 0"),
    ({"xi": float("nan")}, "xi must be a number >= 0 or null"),  # YAML's .nan
    ({"decided": float("inf")}, "decided must be a number >= 0 or null"),
    ({"stiffness_shells": 0}, "stiffness_shells must be an integer >= 1"),
    ({"xi": 0.5, "grid_points": "many"}, "grid_points must be an integer >= 2"),
])
def test_bad_tolerances_are_one_line_user_errors(data, message):
    with pytest.raises(UserError, match=message) as err:
        tolerances_from_mapping(data)
    assert "\n" not in str(err.value)


def test_the_tolerance_schema_is_read_off_the_dataclass():
    """One field list: the schema's properties are Tolerances' fields, with their types, bounds and nulls."""
    import dataclasses

    import jsonschema
    import yaml

    schema = tolerances_schema()
    assert list(schema["properties"]) == [f.name for f in dataclasses.fields(Tolerances)]
    assert schema["properties"]["critical_t"] == {"type": ["number", "null"], "minimum": 0}
    assert schema["properties"]["ci_scale"] == {"type": "number", "minimum": 0}
    assert schema["properties"]["grid_points"] == {"type": "integer", "minimum": 2}
    assert schema["properties"]["marker_presence"] == {"type": "boolean"}
    jsonschema.validate(yaml.safe_load((ROOT / "examples" / "diffcrit.yaml").read_text())["check"], schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"critcal_t": 0.1}, schema)
    tol = tolerances_from_mapping({"critical_t": 1, "grid_points": 8})  # YAML's 1 is a number like 1.0
    assert isinstance(tol.critical_t, float) and isinstance(tol.grid_points, int)


def test_yaml_file_errors(tmp_path):
    bad_section = tmp_path / "a.yaml"
    bad_section.write_text("tolerances:\n  critical_t: 0.1\n")
    with pytest.raises(UserError, match="unknown key 'tolerances'"):
        load_tolerances(bad_section)
    broken = tmp_path / "b.yaml"
    broken.write_text("check: [unclosed\n")
    with pytest.raises(UserError, match="not valid YAML"):
        load_tolerances(broken)
    with pytest.raises(UserError, match="does not exist"):
        load_tolerances(tmp_path / "missing.yaml")


# -- renderings --------------------------------------------------------------------------------


def test_junit_parses_and_counts(baseline):
    outcomes = compare_results(shifted(baseline, 0.5), baseline)
    root = ET.fromstring(render_junit(outcomes, candidate="c.json", baseline="b.json"))
    suite = root.find("testsuite")
    cases = suite.findall("testcase")
    assert len(cases) == int(suite.get("tests")) == len(outcomes)
    failed = {c.get("name") for c in cases if c.find("failure") is not None}
    assert failed == {o.name for o in outcomes if o.failed} and CHECK_CRITICAL_T in failed
    assert int(suite.get("failures")) == len(failed)


def test_markdown_has_a_row_per_check(baseline):
    outcomes = compare_results(shifted(baseline, 0.5), baseline)
    text = render_markdown(outcomes, candidate="c.json", baseline="b.json", notes=["config steps: 1 vs 2"])
    assert text.startswith("## ❌ diffcrit check failed")
    assert sum(line.startswith("| `") for line in text.splitlines()) == len(outcomes)
    assert "config steps: 1 vs 2" in text


def test_json_document_round_trips(baseline):
    doc = outcomes_to_dict(compare_results(baseline, baseline), Tolerances())
    assert json.loads(json.dumps(doc, allow_nan=False))["passed"] is True


# -- the command -------------------------------------------------------------------------------


@pytest.fixture()
def files(tmp_path, baseline):
    paths = {"base": tmp_path / "baseline.json", "same": tmp_path / "same.json", "moved": tmp_path / "moved.json"}
    for key, doc in (("base", baseline), ("same", baseline), ("moved", shifted(baseline, 0.5))):
        paths[key].write_text(json.dumps(doc))
    return paths


def invoke(*args):
    """``diffcrit check ARGS`` on a wide terminal (the table keeps one row per line)."""
    return run("check", *args, env={"COLUMNS": "200"})


def test_cli_pass_exits_0(files):
    res = invoke(files["same"], "--baseline", files["base"])
    assert res.exit_code == 0, res.output
    assert "critical.t" in res.output and "passed: 10 checks (8 skipped)" in res.output
    assert "paired (same sample range 0..15" in res.output


def test_cli_regression_exits_1_and_writes_reports(files, tmp_path):
    report, junit = tmp_path / "summary.md", tmp_path / "results.xml"
    res = invoke(files["moved"], "-b", files["base"], "--report", report, "--junit", junit)
    assert res.exit_code == 1, res.output
    assert "failed:" in res.output and "critical.t" in res.output
    assert "❌" in report.read_text()
    assert ET.parse(junit).getroot().find("testsuite").get("failures") != "0"


def test_cli_json_on_stdout(files):
    res = run("check", files["moved"], "-b", files["base"], "--json")
    assert res.exit_code == 1
    assert json.loads(res.stdout)["passed"] is False


def test_cli_config_tolerances_apply(files, tmp_path):
    loose = tmp_path / "diffcrit.yaml"
    loose.write_text("check:\n  paired_critical_t: 1.0\n  markers: 1.0\n  paired_decided: 1.0\n  stiffness: null\n"
                     "  xi: 1.0\n  xi_eq: null\n")
    assert invoke(files["moved"], "-b", files["base"], "--config", loose).exit_code == 0


@pytest.mark.parametrize("make_bad, message", [
    (lambda p: p.write_text("{not json"), "is not valid JSON (line 1"),
    (lambda p: p.write_text("[1, 2]"), "is not a diffcrit result"),
    (lambda p: p.write_text(json.dumps(with_changes(make_analyze_result(), schema_version=2))), "schema_version 2"),
    (lambda p: p.write_text(json.dumps(make_analyze_result(shape=(4, 16, 16)))), "different model shapes"),
    (lambda p: p.write_text(json.dumps(make_guide_result())), "is a guide result"),
])
def test_cli_bad_candidate_exits_2_with_one_line(files, tmp_path, make_bad, message):
    bad = tmp_path / "bad.json"
    make_bad(bad)
    res = invoke(bad, "-b", files["base"])
    assert res.exit_code == 2
    assert message in res.output
    assert res.output.strip().count("\n") == 0 and "Traceback" not in res.output


def test_cli_bad_config_and_arguments_exit_2(files, tmp_path):
    cfg = tmp_path / "diffcrit.yaml"
    cfg.write_text("check:\n  critical_t: wide\n")
    res = invoke(files["same"], "-b", files["base"], "--config", cfg)
    assert res.exit_code == 2 and "critical_t must be a number >= 0 or null" in res.output
    assert invoke(files["same"], "-b", tmp_path / "missing.json").exit_code == 2
    both = invoke(files["same"], "-b", files["base"], "--model", "builtin:x")
    assert both.exit_code == 2 and "not both" in both.output
    assert invoke("-b", files["base"]).exit_code == 2


class FakeResult:
    def __init__(self, document):
        self.document = document

    def to_dict(self):
        return self.document


def test_cli_model_analyses_with_the_baselines_config(files, baseline, monkeypatch, tmp_path):
    import diffcrit

    seen = {}

    def fake_analyze(model, **options):
        seen.update(model=model, options=options)
        return FakeResult(shifted(baseline, 0.5))

    monkeypatch.setattr(diffcrit, "analyze", fake_analyze, raising=False)
    saved = tmp_path / "candidate.json"
    model = "builtin:mixture?size=16&channels=3"  # the baseline's shape, (3, 16, 16)
    res = invoke("--model", model, "-b", files["base"], "--device", "cpu", "--save-candidate", saved)
    assert res.exit_code == 1, res.output
    assert seen["model"] == model
    assert seen["options"] == {**baseline["config"], "device": "cpu"}
    assert read_document(saved)["critical"]["t"] == pytest.approx(2.0)


def test_cli_model_checks_the_shape_before_analysing(files, monkeypatch, tmp_path):
    import diffcrit

    calls = []
    monkeypatch.setattr(diffcrit, "analyze", lambda model, **options: calls.append(model), raising=False)
    saved = tmp_path / "candidate.json"
    res = invoke("--model", "builtin:mixture?size=8", "-b", files["base"], "--save-candidate", saved)
    one_line_error(res, "different model shapes: candidate [1, 8, 8], baseline [3, 16, 16]")
    assert calls == [] and not saved.exists()


def test_cli_model_leaves_no_candidate_file_when_it_does_not_compare(files, baseline, monkeypatch, tmp_path):
    import diffcrit

    other_shells = with_changes(baseline, shells=[0.0, 0.5, 1.0, 1.5])
    monkeypatch.setattr(diffcrit, "analyze", lambda model, **options: FakeResult(other_shells), raising=False)
    saved = tmp_path / "candidate.json"
    res = invoke("--model", "builtin:mixture?size=16&channels=3", "-b", files["base"], "--save-candidate", saved)
    one_line_error(res, "different shell wave numbers")
    assert not saved.exists()


def test_cli_save_candidate_never_overwrites_the_baseline(files):
    before = files["base"].read_text()
    res = invoke("--model", "builtin:mixture?size=16&channels=3", "-b", files["base"],
                 "--save-candidate", files["base"])
    one_line_error(res, "is the same file as --baseline")
    assert files["base"].read_text() == before


@pytest.mark.parametrize("change, fragments", [
    (lambda d: with_changes(d, model={"id": "x", "kind": "builtin"}),
     ["does not match the analyze result schema", "model: 'shape' is a required property"]),
    (lambda d: with_changes(d, steps=d["steps"][:3] + [{**d["steps"][3], "t": "late"}] + d["steps"][4:]),
     ["steps[3].t must be number, got string"]),
    (lambda d: {"schema_version": 1, "kind": "predict"}, ["is a predict result, not an analyze result"]),
])
def test_cli_invalid_documents_are_one_line_errors(files, tmp_path, change, fragments):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(change(make_analyze_result())))
    one_line_error(invoke(bad, "-b", files["base"]), *fragments)
    one_line_error(invoke(files["same"], "-b", bad), *fragments)


def test_config_differences_note_options_and_the_probe_method():
    from diffcrit.release.checking import config_differences

    base = make_analyze_result()
    same = copy.deepcopy(base)
    assert config_differences(same, base) == ["comparison: paired (same sample range 0..15: common random numbers)"]
    other = copy.deepcopy(base)
    other["config"]["steps"] = 7
    other["environment"]["probe_method"] = "fd"
    notes = config_differences(other, base)
    assert any(n.startswith("config steps: candidate 7") for n in notes)
    assert "probe method: candidate 'fd', baseline 'jvp' (they agree to ~1e-4 in s)" in notes


def test_python_check_equals_the_cli_json(files, tmp_path):
    """``diffcrit.check`` from Python gives the CLI's --json document, from files or from documents."""
    res = run("check", files["moved"], "-b", files["base"], "--json")
    from_files = diffcrit.check(files["moved"], files["base"])
    from_documents = diffcrit.check(json.loads(Path(files["moved"]).read_text()),
                                    json.loads(Path(files["base"]).read_text()))
    assert json.loads(res.stdout) == from_files == from_documents
    assert from_files["passed"] is False
    loose = tmp_path / "diffcrit.yaml"
    loose.write_text("check:\n  paired_critical_t: 1.0\n  markers: 1.0\n  paired_decided: 1.0\n  stiffness: null\n"
                     "  xi: 1.0\n  xi_eq: null\n")
    assert diffcrit.check(files["moved"], files["base"], loose)["passed"] is True


def test_suggest_and_check_are_the_package_api():
    assert {"check", "suggest"} <= set(diffcrit.__all__)
    assert callable(diffcrit.check) and callable(diffcrit.suggest)
