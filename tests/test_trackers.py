"""--report-to (report/trackers.py, docs/outputs.md): tensorboard's event files, read back offline, hold every curve of
the document at its step and the summary values; a tracker that is not installed, or misplaced files, are one line
before any work."""

from __future__ import annotations

from pathlib import Path

import accelerate.tracking
import pytest
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from test_table import RESULTS, document_curves

import diffcrit
from diffcrit.errors import UserError
from diffcrit.report import table
from diffcrit.report.document import KIND_GUIDE, Result, read_document
from diffcrit.report.trackers import log_result, tracker_names
from cli_checks import FAST, one_line_error, run


def logged_scalars(folder: Path) -> dict[str, dict[int, float]]:
    """{tag: {step: value}} of every scalar in the event files under ``folder``."""
    found: dict[str, dict[int, float]] = {}
    for events in sorted(folder.rglob("events.out.tfevents.*")):
        accumulator = EventAccumulator(str(events), size_guidance={"scalars": 0})
        accumulator.Reload()
        for tag in accumulator.Tags()["scalars"]:
            for event in accumulator.Scalars(tag):
                assert event.step not in found.get(tag, {}), f"{tag} logged twice at step {event.step}"
                found.setdefault(tag, {})[event.step] = event.value
    return found


def expected_curves(document: dict) -> dict[str, dict[int, float]]:
    """What the trackers should hold of a document's curves, named as docs/outputs.md says: ``<observable>`` or
    ``<observable>/shell_<n>``, bands as ``<observable>_ci_lo``/``_ci_hi``, the clones' under ``<part>/``, and ``t``
    and ``sigma`` at every step."""
    expected: dict[str, dict[int, float]] = {}
    for (part, step, shell, name), values in document_curves(document).items():
        prefix = "" if part == table.PART_TRUNK else f"{part}/"
        for suffix, value in zip(("", "_ci_lo", "_ci_hi"), values, strict=True):
            if value is not None:
                tag = prefix + name + suffix + ("" if shell is None else f"/shell_{shell}")
                expected.setdefault(tag, {})[step] = value
    for step in document["steps"]:
        expected.setdefault("t", {})[step["index"]] = step["t"]
        expected.setdefault("sigma", {})[step["index"]] = step["sigma"]
    return expected


def approx(curves: dict[str, dict[int, float]]):
    return {tag: pytest.approx(values, rel=1e-6) for tag, values in curves.items()}  # event files hold float32


def test_tensorboard_holds_every_curve_at_its_step_and_the_summary(tmp_path):
    result = Result.from_json(RESULTS / "digits-class-decision-fb.json")  # trunk, null, clones, forward-backward
    assert log_result(result, "tensorboard", tmp_path) == ["tensorboard"]
    logged = logged_scalars(tmp_path)
    summary_tags = ("critical/", "transition/")
    curves = {tag: values for tag, values in logged.items() if not tag.startswith(summary_tags)}
    assert approx(curves) == expected_curves(result.document)
    assert {"stiffness/shell_1", "decided_ci_lo/shell_3", "null_decided/shell_0", "xi_state",
            "clones/fraction/shell_2", "clones/fraction_ci_hi/shell_2", "forward_backward/keep_rate"} <= set(logged)
    critical = result.critical
    summary = {tag: values[0] for tag, values in logged.items() if tag.startswith(summary_tags)}
    assert summary["critical/t"] == pytest.approx(critical["t"])
    assert summary["critical/ci95_hi"] == pytest.approx(critical["ci95"][1])
    assert summary["critical/transition/evidence"] == 1.0
    marker = critical["markers"]["class_decision_fb"]
    assert summary["critical/markers/class_decision_fb/t"] == pytest.approx(marker["t"])
    shell3 = next(v for v in result.document["transition"] if v["shell"] == 3)
    assert summary["transition/shell_3/value"] == pytest.approx(shell3["value"])
    assert summary == approx(table.analyze_summary(result.document))
    (hparams,) = tmp_path.rglob("hparams.yml")
    assert yaml.safe_load(hparams.read_text())["steps"] == result.document["config"]["steps"]


def test_a_guide_result_logs_its_arms_and_comparisons(tmp_path):
    assert diffcrit.log_result is log_result
    guide = read_document(RESULTS / "digits-guide.json", KIND_GUIDE)  # log_result takes documents too
    log_result(guide, "tensorboard", tmp_path / "guide")
    logged = {tag: values[0] for tag, values in logged_scalars(tmp_path / "guide").items()}
    critical_arm = guide["arms"][0]
    assert logged["arms/critical/top1/mean"] == pytest.approx(critical_arm["metrics"]["top1"]["mean"])
    assert logged["critical/t"] == pytest.approx(guide["critical"]["t"])
    first = guide["comparisons"][0]
    assert logged[f"comparisons/critical - {first['versus']}/{first['metric']}/p_value"] == pytest.approx(
        first["p_value"])
    assert not any(tag.startswith(("stiffness", "decided")) for tag in logged)


def test_the_cli_logs_the_run_it_wrote(tmp_path):
    out, logs = tmp_path / "r.json", tmp_path / "logs"
    result = run("analyze", "--model", "builtin:mixture", *FAST, "--out", out, "--report-to", "tensorboard",
                 "--logging-dir", logs)
    assert result.exit_code == 0, result.output
    document = Result.from_json(out).document
    (run_folder,) = logs.iterdir()
    assert run_folder.name.startswith("analyze-")
    logged = logged_scalars(run_folder)
    expected = expected_curves(document)
    assert {tag: logged[tag] for tag in expected} == approx(expected)


def test_a_tracker_not_installed_is_one_line_before_any_work(tmp_path, monkeypatch):
    monkeypatch.setattr(accelerate.tracking, "get_available_trackers", lambda: [])
    monkeypatch.setattr(diffcrit, "analyze", lambda *a, **k: pytest.fail("sampled before refusing the tracker"))
    one_line_error(run("analyze", *FAST, "--report-to", "tensorboard", "--logging-dir", tmp_path),
                   "--report-to tensorboard needs the package tensorboard", "pip install tensorboard")
    with pytest.raises(UserError, match="no tracker is installed"):
        tracker_names("all", tmp_path)


@pytest.mark.parametrize("report_to, logging_dir, words", [
    ("tensorboard,nonesuch", "logs", "`report_to` nonesuch is no tracker accelerate knows"),
    ("tensorboard", None, "`report_to` tensorboard writes files: give `logging_dir`"),
    (None, "logs", "no `report_to` names one"),
])
def test_tracker_mistakes_are_one_line(report_to, logging_dir, words):
    with pytest.raises(UserError, match=words) as caught:
        tracker_names(report_to, logging_dir)
    assert "\n" not in str(caught.value)


def test_the_logging_dir_may_not_lie_inside_the_model_folder(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    one_line_error(run("analyze", "--model", model, *FAST, "--report-to", "tensorboard",
                       "--logging-dir", model / "logs"), "--logging-dir", "model folder")


def test_guide_logs_its_summary_from_the_cli(cond_folder, torchscript_classifier, critical_json, tmp_path):
    out, logs = tmp_path / "g.json", tmp_path / "logs"
    result = run("guide", "--model", cond_folder, "--critical-from", critical_json, "--classifier",
                 torchscript_classifier, "--steps", "6", "--samples", "2", "--device", "cpu", "--bootstrap", "10",
                 "--quiet", "--out", out, "--report-to", "tensorboard", "--logging-dir", logs)
    assert result.exit_code == 0, result.output
    document = read_document(out, KIND_GUIDE)
    (run_folder,) = logs.iterdir()
    logged = {tag: values[0] for tag, values in logged_scalars(run_folder).items()}
    assert run_folder.name.startswith("guide-") and logged == approx(table.guide_summary(document))
    arm = document["arms"][-1]
    assert logged[f"arms/{arm['name']}/top1/mean"] == pytest.approx(arm["metrics"]["top1"]["mean"])


def test_suggest_refuses_report_to(tmp_path):
    one_line_error(run("guide", "-m", "builtin:digits", "--suggest", "--report-to", "tensorboard", "--logging-dir",
                       tmp_path),
                   "--suggest", "--report-to")
