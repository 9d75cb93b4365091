"""`diffcrit plot` and the sparkline: every kind of result draws a non-blank figure of the set size."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from matplotlib.image import imread
from typer.testing import CliRunner

from diffcrit.errors import UserError
from diffcrit.plotting import DPI, FIGSIZE_IN, plot_results, sigma_to_t, t_to_sigma
from diffcrit.sparkline import BLOCKS, sparkline
from cli_checks import one_line_error
from result_factory import import_cli, make_analyze_result, make_guide_result, with_changes

EXPECTED_HW = (round(FIGSIZE_IN[1] * DPI), round(FIGSIZE_IN[0] * DPI))


def assert_drawn_png(path):
    image = imread(path)
    assert image.shape[:2] == EXPECTED_HW
    gray = image[..., :3].mean(axis=-1)
    assert (gray < 0.9).mean() > 0.01, "the figure is blank"
    return image


@pytest.mark.parametrize("kind", ["analyze", "analyze-overlay", "guide", "guide-unscored"])
def test_each_kind_of_result_draws(tmp_path, kind):
    docs = {
        "analyze": [make_analyze_result(1.5, noise=0.02)],
        "analyze-overlay": [make_analyze_result(1.5), make_analyze_result(2.0, steps=30, probe_every=2)],
        "guide": [make_guide_result()],
        "guide-unscored": [make_guide_result(scored=False)],
    }[kind]
    out = plot_results(docs, tmp_path / f"{kind}.png")
    assert_drawn_png(out)


def test_vector_formats(tmp_path):
    doc = make_analyze_result(1.5)
    assert (plot_results([doc], tmp_path / "a.svg")).read_text().lstrip().startswith("<?xml")
    assert (plot_results([doc], tmp_path / "a.pdf")).read_bytes().startswith(b"%PDF")


def test_results_without_critical_point_or_probes_still_draw(tmp_path):
    doc = make_analyze_result(1.5)
    doc["critical"] = {**doc["critical"], "found": False, "t": None, "ci95": None,
                       "markers": {name: None for name in doc["critical"]["markers"]}}
    doc["steps"] = [{**s, "stiffness": None, "stiffness_sem": None, "xi_eq": None} for s in doc["steps"]]
    assert_drawn_png(plot_results([doc], tmp_path / "bare.png"))


def test_bad_requests_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="figure format"):
        plot_results([make_analyze_result()], tmp_path / "a.jpeg")
    with pytest.raises(UserError, match="cannot overlay"):
        plot_results([make_analyze_result(), make_guide_result()], tmp_path / "a.png")
    with pytest.raises(UserError, match="nothing to plot"):
        plot_results([], tmp_path / "a.png")


def test_sigma_axis_is_the_inverse_of_t():
    sigma = np.array([0.0, 0.1, 1.0, 80.0])
    assert np.allclose(t_to_sigma(sigma_to_t(sigma)), sigma)
    assert t_to_sigma(math.log(2.0)) == pytest.approx(1.0)  # t = log(1 + sigma^2), DESIGN.md §2


def test_cli_plot_writes_the_figure(tmp_path):
    app = import_cli().app
    paths = []
    for name, doc in (("baseline", make_analyze_result(1.5)), ("candidate", make_analyze_result(1.9))):
        paths.append(tmp_path / f"{name}.json")
        paths[-1].write_text(json.dumps(doc))
    out = tmp_path / "compare.png"
    res = CliRunner().invoke(app, ["plot", *map(str, paths), "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert_drawn_png(out)
    missing = CliRunner().invoke(app, ["plot", str(tmp_path / "nope.json"), "-o", str(out)])
    assert missing.exit_code == 2 and "does not exist" in missing.output
    bad = CliRunner().invoke(app, ["plot", str(paths[0]), "-o", str(tmp_path / "x.gif")])
    assert bad.exit_code == 2 and "figure format" in bad.output


@pytest.mark.parametrize("make_doc, fragments", [
    (lambda: with_changes(make_analyze_result(), schema_version=99), ["schema_version 99", "upgrade diffcrit"]),
    (lambda: with_changes(make_guide_result(), schema_version=99), ["schema_version 99"]),
    (lambda: with_changes(make_guide_result(), arms=[]), ["guide result schema", "arms needs at least 1 entry"]),
    (lambda: with_changes(make_analyze_result(), shells="k"), ["shells must be array, got string"]),
    (lambda: {"schema_version": 1, "kind": "predict"}, ["is a predict result, not an analyze or a guide result"]),
])
def test_cli_plot_reads_what_check_reads(tmp_path, make_doc, fragments):
    path = tmp_path / "r.json"
    path.write_text(json.dumps(make_doc()))
    out = tmp_path / "r.png"
    one_line_error(CliRunner().invoke(import_cli().app, ["plot", str(path), "-o", str(out)]), *fragments)
    assert not out.exists()


# -- sparkline ---------------------------------------------------------------------------------


def test_sparkline_scales_min_to_max():
    line = sparkline([0, 1, 2, 3, 4, 5, 6, 7], width=20)
    assert line == BLOCKS


def test_sparkline_resamples_long_series_to_width():
    line = sparkline(list(range(100)), width=10)
    assert len(line) == 10 and line[0] == BLOCKS[0] and line[-1] == BLOCKS[-1]
    assert list(line) == sorted(line)


def test_sparkline_missing_flat_and_shared_scale():
    assert sparkline([1.0, None, float("nan"), 3.0], width=8) == BLOCKS[0] + "  " + BLOCKS[-1]
    assert sparkline([2.0, 2.0, 2.0], width=8) == BLOCKS[3] * 3
    assert sparkline([None, None], width=8) == "  "
    assert sparkline([], width=8) == ""
    assert sparkline([-1.0, 0.0, 5.0], width=8, lo=-1.0, hi=1.0) == BLOCKS[0] + BLOCKS[4] + BLOCKS[-1]
    assert sparkline(np.array([0.0, 1.0], dtype=np.float32), width=4) == BLOCKS[0] + BLOCKS[-1]
    with pytest.raises(ValueError):
        sparkline([1.0], width=0)
