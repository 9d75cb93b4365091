"""Results as data (report/table.py, docs/outputs.md): ``from_json`` reads back what ``to_json`` wrote, and
``to_pandas`` holds every per-step curve of a document, found by walking the document itself, so a curve the frame
misses fails here."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pandas as pd
import pytest

from diffcrit.errors import UserError
from diffcrit.guidance.engine import GuideResult
from diffcrit.report import table
from diffcrit.report.document import Outcome, Result

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "examples" / "results"
# plain; with clones, the classifier's forward-backward and the sampled Gaussian null; another model's transition
ANALYZED = ["digits-analyze.json", "digits-class-decision-fb.json", "textures-analyze-transition.json"]


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def document_curves(doc: dict) -> dict[tuple, tuple]:
    """{(part, step, shell, observable): (value, ci_lo, ci_hi)} read from the document by walking it: every key of
    every step, every per-branch-step list of the clones and their forward-backward; a value of a shape no curve has
    (and not named a coordinate or label in report/table.py) is an error, so a new kind of curve cannot slip by."""
    found: dict[tuple, tuple] = {}

    def walk(part, step, record):
        for name, value in record.items():
            if name in table.NOT_CURVES or name.endswith(table.BAND) or value is None:
                continue
            band = record.get(name + table.BAND)
            if _number(value):
                found[(part, step, None, name)] = (value, *(band or (None, None)))
            elif isinstance(value, list) and all(v is None or _number(v) for v in value):
                for shell, entry in enumerate(value):
                    if entry is not None:
                        pair = band[shell] if band else (None, None)
                        found[(part, step, shell, name)] = (entry, *(pair or (None, None)))
            else:
                raise AssertionError(f"{part} {name}: a per-step value of unknown shape {type(value).__name__}")

    for step in doc["steps"]:
        walk(table.PART_TRUNK, step["index"], step)
    clones = doc.get("clones")
    blocks = (table.PART_CLONES, clones), (table.PART_FORWARD_BACKWARD, (clones or {}).get("forward_backward"))
    for part, block in blocks:
        if not block:
            continue
        count = len(clones["branch_steps"])
        lists = {k: v for k, v in block.items() if isinstance(v, list) and len(v) == count}
        for b, step in enumerate(clones["branch_steps"]):
            walk(part, step, {k: v[b] for k, v in lists.items() if k not in table.BRANCH_PLACE})
    return found


def frame_curves(frame) -> dict[tuple, tuple]:
    """The same mapping read from the frame (NaN as None), one row per key."""
    found: dict[tuple, tuple] = {}
    for row in frame.itertuples(index=False):
        shell = None if pd.isna(row.shell) else int(row.shell)
        key = (row.part, int(row.step), shell, row.observable)
        assert key not in found, f"two rows for {key}"
        found[key] = tuple(None if math.isnan(v) else v for v in (row.value, row.ci_lo, row.ci_hi))
    return found


def same_curves(doc: dict, frame) -> None:
    expected, got = document_curves(doc), frame_curves(frame)
    assert sorted(got.keys() - expected.keys(), key=str) == []
    assert sorted(expected.keys() - got.keys(), key=str) == []
    assert got == expected


@pytest.mark.parametrize("name", ANALYZED)
def test_to_pandas_holds_every_curve_of_the_document(name):
    result = Result.from_json(RESULTS / name)
    frame = result.to_pandas()
    assert tuple(frame.columns) == table.COLUMNS
    same_curves(result.document, frame)
    steps = {s["index"]: (s["t"], s["sigma"]) for s in result.steps}
    trunk = frame[frame.part == table.PART_TRUNK]
    assert all(steps[int(r.step)] == (r.t, r.sigma) for r in trunk.itertuples())


def test_the_frame_holds_the_clones_forward_backward_and_null_curves():
    frame = Result.from_json(RESULTS / "digits-class-decision-fb.json").to_pandas()
    parts = frame.groupby("part").observable.unique().to_dict()
    assert {"fraction", "decided", "class_fraction"} <= set(parts[table.PART_CLONES])
    assert {"keep_rate", "fraction"} <= set(parts[table.PART_FORWARD_BACKWARD])
    assert {"null_decided", "gaussian_decided", "decided", "stiffness", "xi_state"} <= set(parts[table.PART_TRUNK])
    band = frame[(frame.part == table.PART_CLONES) & (frame.observable == "fraction")]
    assert band.ci_lo.notna().all() and frame[frame.observable == "xi_state"].ci_lo.isna().all()


def test_a_curve_missing_from_the_frame_fails_the_check():
    """The check itself can fail: a frame without one curve, or with one value changed, is caught."""
    result = Result.from_json(RESULTS / "digits-class-decision-fb.json")
    frame = result.to_pandas()
    with pytest.raises(AssertionError):
        same_curves(result.document, frame[frame.observable != "structure_state"])
    changed = frame.copy()
    changed.loc[changed.index[0], "value"] += 1.0
    with pytest.raises(AssertionError):
        same_curves(result.document, changed)
    document = {**result.document, "steps": [{**s, "new_curve": [[0.0, 1.0]]} for s in result.steps]}
    with pytest.raises(AssertionError, match="unknown shape"):
        document_curves(document)


def test_from_json_reads_back_what_to_json_wrote(tmp_path):
    result = Result.from_json(RESULTS / "digits-analyze.json")
    assert result.samples is None
    assert Result.from_json(result.to_json()).to_dict() == result.to_dict()
    result.to_json(tmp_path / "r.json")
    assert Result.from_json(str(tmp_path / "r.json")).to_dict() == result.to_dict()
    guide = GuideResult.from_json(RESULTS / "digits-guide.json")
    assert GuideResult.from_json(guide.to_json()).to_dict() == guide.to_dict() and guide.samples == {}
    assert Outcome.from_json(RESULTS / "digits-guide.json").to_dict() == guide.to_dict()


@pytest.mark.parametrize("source, words", [
    ("examples/results/digits-guide.json", "is a guide result, not an analyze result"),
    ('{"schema_version": 1, "kind": "analyze", "steps": []}', "does not match the analyze result schema"),
    ("{not json", "is not valid JSON"),
    ("no/such/result.json", "no/such/result.json"),
])
def test_from_json_refuses_a_bad_document_in_one_line(source, words, monkeypatch):
    monkeypatch.chdir(ROOT)
    with pytest.raises(UserError, match=words) as caught:
        Result.from_json(source)
    assert "\n" not in str(caught.value)


def test_guide_to_pandas_is_the_arms_metrics():
    guide = GuideResult.from_json(RESULTS / "digits-guide.json")
    frame = guide.to_pandas()
    assert tuple(frame.columns) == table.GUIDE_COLUMNS
    expected = {(a["name"], m): (s["mean"], *s["ci95"]) for a in guide.document["arms"]
                for m, s in a["metrics"].items()}
    assert {(r.arm, r.metric): (r.value, r.ci_lo, r.ci_hi) for r in frame.itertuples()} == expected


def test_to_pandas_without_pandas_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)  # import pandas raises ImportError
    with pytest.raises(UserError, match=r"pip install 'diffcrit\[pandas\]'"):
        Result.from_json(RESULTS / "digits-analyze.json").to_pandas()
