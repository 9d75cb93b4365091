"""Tables stay readable in a non-TTY of 80 columns, as in CI logs.

Readable: no line wider than the console, no cell cut with "…", no word of a cell broken across
lines, and the numbers that belong together (a CI, a measured value) on one line.
"""

from __future__ import annotations

from io import StringIO

import pytest
from rich.console import Console

from diffcrit.release.summary import format_measured, format_tolerance
from diffcrit.release.checking import compare_results
from diffcrit.cli.check import render_check
from diffcrit.cli.guide import _ci, _windows, render_guide, render_suggestion
from diffcrit.guidance.engine import guide, suggest
from diffcrit.report.view import GuideView
from result_factory import make_analyze_result, shifted

WIDTHS = [80, 100, 160]


def render(draw, width: int) -> str:
    buffer = StringIO()
    draw(Console(file=buffer, width=width, force_terminal=False))
    return buffer.getvalue()


def assert_readable(text: str, width: int, cells, intact=()) -> None:
    lines = text.splitlines()
    assert "…" not in text, text
    assert max(len(line) for line in lines) <= width, text
    words = set(text.split())
    broken = [word for cell in cells for word in str(cell).split() if word not in words]
    assert not broken, (broken, text)
    split = [s for s in intact if not any(s in line for line in lines)]
    assert not split, (split, text)


@pytest.fixture(scope="module")
def guide_document(cond_folder, torchscript_classifier, critical_json):
    """A real, scored guide result: the tiny class-conditional UNet, every default arm, 2 metrics."""
    result = guide(str(cond_folder), critical_from=critical_json, classifier=torchscript_classifier, width=0.2,
                   steps=8, samples=4, device="cpu", bootstrap=50)
    suggestion = suggest(str(cond_folder), critical_from=critical_json, width=0.2, steps=20, device="cpu")
    return result.to_dict(), suggestion


@pytest.mark.parametrize("width", WIDTHS)
def test_check_table_is_readable(width):
    baseline = make_analyze_result(1.5)
    outcomes = compare_results(shifted(baseline, 0.5), baseline)
    text = render(lambda c: render_check(c, outcomes, "candidate.json", "baselines/baseline.json"), width)
    cells = [field for o in outcomes for field in (o.name, o.status, o.unit, o.detail)]
    measured = [f"{o.name} " for o in outcomes] + [format_measured(o) for o in outcomes]
    assert_readable(text, width, cells, intact=measured + [format_tolerance(o) for o in outcomes])


@pytest.mark.parametrize("width", WIDTHS)
def test_guide_tables_are_readable(guide_document, width):
    document, suggestion = guide_document
    assert document["scored"] and len(document["arms"]) == 5
    text = render(lambda c: render_guide(c, document), width)
    cells = [arm["name"] for arm in document["arms"]] + [c["versus"] for c in document["comparisons"]]
    cells += [_windows(arm) for arm in GuideView.from_document(document).arms]  # "random, same steps" may wrap
    intact = []
    for arm in document["arms"]:
        intact += [f"{stat['mean']:.3f}" for stat in arm["metrics"].values()]
        intact += [_ci(stat["ci95"], ".2f") for stat in arm["metrics"].values()]
    intact += [_ci(c["ci95"], "+.2g") for c in document["comparisons"]]
    intact += [f"{c['p_value']:.2g}" for c in document["comparisons"]]
    assert_readable(text, width, cells + ["target_prob", "top1"], intact)
    text = render(lambda c: render_suggestion(c, suggestion), width)
    assert_readable(text, width, [suggestion["critical"]["source"]])


@pytest.mark.parametrize("conditioning, title", [
    (None, "m — markers"),
    ({"type": "class", "class_label": 3, "cfg": {"scale": 2.5, "null_class": 10}}, "m (class 3, CFG 2.5) — markers"),
    ({"type": "prompt", "prompt": "a red barn"}, 'm (prompt "a red barn") — markers'),
    ({"type": "prompt_embeds", "file": "e.safetensors"}, "m (prompt embeddings) — markers"),
])
def test_summary_title_says_what_the_run_was_conditioned_on(conditioning, title):
    from diffcrit.cli._render import render_summary

    document = make_analyze_result(0.45)
    document["model"].update(id="m", conditioning=conditioning)
    assert title in " ".join(render(lambda console: render_summary(console, document), 160).split())


def test_instability_line_names_unstable_shells_or_what_their_absence_rules_out():
    from diffcrit.cli._render import instability_words
    from diffcrit.report.view import Instability

    none = Instability(16, 5, (0.0, 0.0), (None, None), (None, None), False, 0.096, 0.8)
    assert instability_words(none) == ("no probe trajectory turned unstable (16 trajectories, 5 probed steps; a share "
                                       "of 0.096 or more at a probed step would have shown with probability 0.8)")
    some = Instability(16, 5, (0.1875, 0.0), ((0.04, 0.46), None), (0.535, None), True, 0.096, 0.8)
    line = instability_words(some)
    assert "shell 0: 3/16 at t = 0.535" in line and "shell 1" not in line
