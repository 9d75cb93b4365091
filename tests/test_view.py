"""The typed view of result documents (diffcrit/report/view.py): it reads every shipped result, turns nulls and
missing parts into NaN / None, and is the only reader of documents in report/ and release/ (docs/design.md §10)."""

from __future__ import annotations

import ast
import json
import math
from pathlib import Path

import numpy as np
import pytest

from diffcrit.analysis.detection import DECISION, MARKERS
from diffcrit.report.document import KIND_ANALYZE, KIND_GUIDE, read_document
from diffcrit.report.view import AnalyzeView, Critical, GuideView, view
from result_factory import make_analyze_result, make_guide_result, with_changes

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted(p for folder in ("examples/results", "bench/results") for p in (ROOT / folder).rglob("*.json"))


def _result_kind(path: Path) -> str | None:
    doc = json.loads(path.read_text())
    if not isinstance(doc, dict) or "schema_version" not in doc:
        return None  # a benchmark's own table, not a result document
    kind = doc.get("kind", KIND_ANALYZE if "steps" in doc else None)
    return kind if kind in (KIND_ANALYZE, KIND_GUIDE) else None


RESULTS = [(path, kind) for path in SHIPPED if (kind := _result_kind(path))]


def test_the_shipped_results_are_found():
    kinds = [kind for _, kind in RESULTS]
    assert kinds.count(KIND_ANALYZE) >= 5 and kinds.count(KIND_GUIDE) >= 10  # examples/results, v0.1-epsilon too


@pytest.mark.parametrize("path, kind", RESULTS, ids=[str(p.relative_to(ROOT)) for p, _ in RESULTS])
def test_the_view_reads_every_shipped_result(path, kind):
    doc = read_document(path, (KIND_ANALYZE, KIND_GUIDE))
    read = view(doc)
    assert read.model.id == doc["model"]["id"]
    if kind == KIND_GUIDE:
        assert isinstance(read, GuideView) and len(read.arms) == len(doc["arms"])
        assert all(isinstance(stat.mean, float) for arm in read.arms for stat in arm.metrics.values())
        return
    assert isinstance(read, AnalyzeView) and read.n_steps == len(read.steps) == len(doc["steps"])
    assert read.steps.t.tolist() == sorted(s["t"] for s in doc["steps"])  # ascending t: generation order reversed
    assert read.curve("xi_denoised").shape == (len(read.steps),)
    stiffness = read.curve("stiffness")
    assert stiffness.shape == (len(read.steps), len(doc["shells"]))
    assert np.isnan(stiffness[~read.steps.probed]).all() and np.isfinite(stiffness[read.steps.probed]).any()
    assert set(read.critical.markers) == set(doc["critical"]["markers"])
    for name, marker in read.critical.markers.items():
        assert marker.found == ((doc["critical"]["markers"][name] or {}).get("t") is not None)
    assert read.critical.located == (doc["critical"]["found"] and doc["critical"]["t"] is not None)


def test_curves_are_nan_where_null_and_none_where_no_step_has_them():
    doc = make_analyze_result(1.5, probe_every=3)
    steps = [dict(step) for step in doc["steps"]]
    steps[0]["decided"] = None  # the samples did not vary at this step
    for step in steps:
        step.pop("unstable_fraction", None)  # a result of diffcrit 0.1.0
    read = AnalyzeView.from_document(with_changes(doc, steps=steps))
    decided = read.curve("decided")
    first = int(np.argmax(read.steps.t))  # generation order starts at the largest t
    assert np.isnan(decided[first]).all() and np.isfinite(np.delete(decided, first, axis=0)).all()
    assert read.curve("decided", 0).shape == (len(steps),) and read.curve("decided_ci95", 0).shape == (len(steps), 2)
    assert read.curve("unstable_fraction") is None
    with pytest.raises(KeyError, match="no curve"):
        read.curve("not_a_curve")


def test_optional_parts_are_none_not_empty():
    doc = make_analyze_result(1.5)
    doc.pop("theory", None)
    doc["critical"].pop("transition", None)
    read = AnalyzeView.from_document(doc)
    assert read.theory is None and read.critical.transition is None and read.model.conditioning is None
    guide = GuideView.from_document(make_guide_result())
    assert guide.sweep is None
    assert all(c.p_value is None or isinstance(c.p_value, float) for c in guide.comparisons)


def test_working_time_is_the_critical_time_where_evidenced_else_the_decision_time():
    critical = make_analyze_result(1.5)["critical"]
    assert Critical.from_document(critical).working_time().source == "critical"
    crossover = {**critical, "found": False, "t": None}
    decision = Critical.from_document(crossover).working_time()
    assert decision.source == "decision" and decision.t == pytest.approx(critical["markers"][DECISION]["t"])
    assert Critical.from_document({**crossover, "markers": {}}).working_time() is None


def test_old_comparisons_read_their_wilcoxon_p():
    doc = make_guide_result()
    doc["comparisons"] = [{k: v for k, v in c.items() if k != "p_value"} | {"wilcoxon_p": 0.02}
                          for c in doc["comparisons"]]
    assert [c.p_value for c in GuideView.from_document(doc).comparisons] == [0.02] * len(doc["comparisons"])


def test_markers_keep_the_order_of_detection():
    read = AnalyzeView.from_document(make_analyze_result(1.5))
    assert [m for m in MARKERS if m in read.critical.markers] == list(read.critical.markers)


# -- one reader -----------------------------------------------------------------------------------

READERS = ("diffcrit/report", "diffcrit/release", "diffcrit/cli/_render.py")
# the view, validation on read, and the document's curves as long rows (a transcription, not a reading)
THE_READER = ("diffcrit/report/view.py", "diffcrit/report/document.py", "diffcrit/report/table.py")


def _get_or_empty(node: ast.AST) -> bool:
    """``x.get(...) or {}`` (or [] / ()): a document read by hand, a part assumed optional."""
    return (isinstance(node, ast.BoolOp) and isinstance(node.op, ast.Or)
            and any(isinstance(v, ast.Call) and isinstance(v.func, ast.Attribute) and v.func.attr == "get"
                    for v in node.values[:-1])
            and _empty(node.values[-1]))


def _empty(node: ast.AST) -> bool:
    return (isinstance(node, ast.Dict) and not node.keys) or (isinstance(node, (ast.List, ast.Tuple)) and not node.elts)


def test_report_and_release_read_documents_only_through_the_view():
    """No module of report/ or release/ (nor the analyze summary) but the view chains ``.get(..) or {}`` on a
    document (docs/design.md §10)."""
    offenders = []
    for target in READERS:
        path = ROOT / target
        for file in sorted(path.rglob("*.py")) if path.is_dir() else [path]:
            name = str(file.relative_to(ROOT))
            if name in THE_READER:
                continue
            offenders += [f"{name}:{node.lineno}" for node in ast.walk(ast.parse(file.read_text()))
                          if _get_or_empty(node)]
    assert offenders == []


def test_the_guard_catches_a_hand_read():
    assert _get_or_empty(ast.parse("(doc.get('critical') or {}).get('t')").body[0].value.func.value)
    assert not _get_or_empty(ast.parse("doc.get('critical') or default").body[0].value)


def test_thresholds_are_not_retyped_in_figures_or_checks():
    """The decision level and the consistency bound live in analysis/detection.py; readers import them."""
    for file in [*(ROOT / "diffcrit/report").glob("*figures.py"), ROOT / "diffcrit/release/checking.py",
                 ROOT / "diffcrit/cli/_render.py"]:
        numbers = [node.value for node in ast.walk(ast.parse(file.read_text())) if isinstance(node, ast.Constant)
                   and isinstance(node.value, float) and not isinstance(node.value, bool)]
        assert not any(math.isclose(v, 1.25) for v in numbers), file.name
