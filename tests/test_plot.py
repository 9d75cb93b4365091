"""`diffcrit plot` and the sparkline: every kind of result draws a non-blank figure of the set size, and
the analyze figure holds what it claims (checked on the Figure's artists, found by their gid)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from diffcrit.errors import UserError
from diffcrit.frame import sigma_to_t, t_to_sigma
from diffcrit.report.analyze_figures import CURVE_PANELS
from diffcrit.report.figures import DPI, FIGSIZE_IN, make_figure, plot_results
from diffcrit.report.sparkline import BLOCKS, sparkline
from cli_checks import one_line_error, run
from result_factory import MARKER_NAMES, make_analyze_result, make_guide_result, with_changes

EXPECTED_HW = (round(FIGSIZE_IN[1] * DPI), round(FIGSIZE_IN[0] * DPI))


# Share of coloured pixels (curves, bands, heat maps: axes, ticks and text are black or grey) a figure
# with its data drawn holds at least; a figure of the same document with every series set to null
# has 0.0007 (analyze), the documents here 0.006 - 0.09 (analyze) and 0.0024 (guide, scored).
DRAWN = {"analyze": 0.003, "guide": 0.001, "text": 0.0}


def assert_drawn_png(path, drawn: str = "analyze"):
    """The PNG has the set size, is not blank, and holds coloured data (``DRAWN[drawn]``)."""
    image = imread(path)
    assert image.shape[:2] == EXPECTED_HW
    rgb = image[..., :3]
    assert (rgb.mean(axis=-1) < 0.9).mean() > 0.01, "the figure is blank"
    coloured = (rgb.max(axis=-1) - rgb.min(axis=-1) > 0.25).mean()
    assert coloured >= DRAWN[drawn], f"no data drawn: {coloured:.4f} of the pixels are coloured"
    return image


def test_a_figure_without_data_fails_the_drawn_check(tmp_path):
    doc = make_analyze_result(1.5)
    nulled = ("xi_state", "xi_denoised", "stiffness", "stiffness_sem", "xi_eq", "decided", "decided_ci95",
              "unstable_fraction", "unstable_fraction_ci95", "structure_state", "structure_denoised",
              "gaussian_stiffness", "point_stiffness", "r", "kappa")
    doc["steps"] = [{**s, **{k: None for k in nulled if k in s}} for s in doc["steps"]]
    with pytest.raises(AssertionError, match="no data drawn"):
        assert_drawn_png(plot_results([doc], tmp_path / "empty.png"))


@pytest.mark.parametrize("kind", ["analyze", "analyze-overlay", "guide", "guide-unscored"])
def test_each_kind_of_result_draws(tmp_path, kind):
    docs = {
        "analyze": [make_analyze_result(1.5, noise=0.02)],
        "analyze-overlay": [make_analyze_result(1.5), make_analyze_result(2.0, steps=30, probe_every=2)],
        "guide": [make_guide_result()],
        "guide-unscored": [make_guide_result(scored=False)],
    }[kind]
    out = plot_results(docs, tmp_path / f"{kind}.png")
    assert_drawn_png(out, {"guide": "guide", "guide-unscored": "text"}.get(kind, "analyze"))


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
    assert t_to_sigma(math.log(2.0)) == pytest.approx(1.0)  # t = log(1 + sigma^2), docs/design.md §2
    assert isinstance(t_to_sigma(1.0), float) and isinstance(sigma_to_t(np.float64(2.0)), float)  # the frame's one home
    assert t_to_sigma(np.array([-0.2, 0.0])).tolist() == [0.0, 0.0]  # the axis reaches left of t = 0


def test_cli_plot_writes_the_figure(tmp_path):
    paths = []
    for name, doc in (("baseline", make_analyze_result(1.5)), ("candidate", make_analyze_result(1.9))):
        paths.append(tmp_path / f"{name}.json")
        paths[-1].write_text(json.dumps(doc))
    out = tmp_path / "compare.png"
    res = run("plot", *paths, "-o", out)
    assert res.exit_code == 0, res.output
    assert_drawn_png(out)
    missing = run("plot", tmp_path / "nope.json", "-o", out)
    assert missing.exit_code == 2 and "does not exist" in missing.output
    bad = run("plot", paths[0], "-o", tmp_path / "x.gif")
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
    one_line_error(run("plot", path, "-o", out), *fragments)
    assert not out.exists()



# -- what the analyze figure shows -------------------------------------------------------------

OLD_STEP_KEYS = ("decided", "decided_ci95", "gaussian_stiffness", "unstable_fraction", "unstable_fraction_ci95",
                 "x0_consistent", "point_stiffness", "probed")
EXAMPLE_OLD_RESULT = (Path(__file__).resolve().parents[1] / "examples" / "results" / "v0.1-epsilon"
                      / "digits-analyze.json")


def panel(fig, name):
    return next(ax for ax in fig.axes if ax.get_gid() == name)


def artists(ax, prefix):
    """Lines, collections and patches of ``ax`` whose gid starts with ``prefix``, by gid."""
    found = {}
    for artist in [*ax.lines, *ax.collections, *ax.patches]:
        gid = artist.get_gid() or ""
        if gid.startswith(prefix):
            found.setdefault(gid, artist)
    return found


def ci_of(ax, gid):
    """The [lo, hi] in t of the error bar drawn with ``gid`` (its LineCollection), and its y."""
    (bar,) = [c for c in ax.collections if c.get_gid() == gid]
    (segment,) = bar.get_segments()
    return segment[:, 0].tolist(), segment[0, 1]


def span_of(patch):
    """(left, right) in t of an axvspan (a Rectangle in data x, axes y)."""
    return patch.get_x(), patch.get_x() + patch.get_width()


def texts(ax):
    return " | ".join(t.get_text() for t in ax.texts)


def all_texts(fig):
    from matplotlib.text import Text

    return " | ".join(t.get_text() for t in fig.findobj(Text))


def old_result():
    """An analyze result as diffcrit 0.1.0 wrote it: no ensemble keys, four markers, critical.t a median."""
    doc = make_analyze_result(1.5)
    doc["diffcrit_version"] = "0.1.0"
    doc["steps"] = [{k: v for k, v in step.items() if k not in OLD_STEP_KEYS} for step in doc["steps"]]
    markers = {k: v for k, v in doc["critical"]["markers"].items() if k not in ("decision", "instability_onset")}
    markers = {k: {key: v[key] for key in ("t", "sigma", "step", "timestep", "fraction")} for k, v in markers.items()}
    doc["critical"] = {"found": True, "t": 1.5, "sigma": 1.87, "step": 30, "timestep": 230.0, "fraction": 0.75,
                       "ci95": [1.4, 1.6], "markers": markers, "lowest_shell": 0,
                       "bootstrap": {"repeats": 200, "over": "samples and probe points"}}
    del doc["diagnostics"]
    return doc


def test_decided_panel_has_a_line_and_band_per_varying_shell_the_levels_and_the_marker():
    doc = make_analyze_result(1.5)
    for step in doc["steps"]:  # shell 3 does not vary: its decided fraction is null
        step["decided"][3], step["decided_ci95"] = None, [*step["decided_ci95"][:3], None]
    ax = panel(make_figure([doc]), "decided")
    assert set(artists(ax, "decided:")) == {"decided:0:0", "decided:0:1", "decided:0:2"}
    assert set(artists(ax, "decided-band:")) == {"decided-band:0:0", "decided-band:0:1", "decided-band:0:2"}
    assert list(artists(ax, "decision-level")["decision-level"].get_ydata()) == [0.5, 0.5]
    assert list(artists(ax, "consistency-limit")["consistency-limit"].get_ydata()) == [1.25, 1.25]
    assert "shell 3: samples do not vary" in texts(ax)
    ci, y = ci_of(ax, "decision-marker:0")  # its ci95, at the level 1/2
    assert ci == pytest.approx([1.42, 1.58]) and y == 0.5
    t = np.array([step["t"] for step in doc["steps"]])
    line = artists(ax, "decided:0:0")["decided:0:0"]
    assert np.allclose(line.get_xdata(), np.sort(t))  # drawn in ascending t, every step


def test_stiffness_panel_draws_the_gaussian_reference_dashed_in_the_shell_colour():
    ax = panel(make_figure([make_analyze_result(1.5)]), "stiffness")
    for n in range(4):
        measured, reference = ax_line(ax, f"stiffness:0:{n}"), ax_line(ax, f"gaussian:0:{n}")
        assert measured.get_color() == reference.get_color()
        assert measured.get_linestyle() == "-" and reference.get_linestyle() == "--"
        assert f"stiffness-band:0:{n}" in artists(ax, "stiffness-band")
    legacy = panel(make_figure([old_result()]), "stiffness")
    assert not artists(legacy, "gaussian:") and "Gaussian reference s_G not in this result" in texts(legacy)


def ax_line(ax, gid):
    return artists(ax, gid)[gid]


def test_instability_panel_bands_the_decision_shell_and_says_when_not_measured():
    doc = make_analyze_result(1.5)
    doc["critical"]["decision_shell"] = 1
    ax = panel(make_figure([doc]), "unstable")
    assert set(artists(ax, "unstable-band:")) == {"unstable-band:0:1"}
    assert {f"unstable:0:{n}" for n in range(4)} == set(artists(ax, "unstable:"))
    assert ax_line(ax, "unstable:0:1").get_linewidth() > ax_line(ax, "unstable:0:0").get_linewidth()
    at_zero = make_analyze_result(1.5)
    at_zero["config"]["linearize_at"] = at_zero["critical"]["regime"] = "zero"
    for step in at_zero["steps"]:
        step["unstable_fraction"] = [None] * 4
    ax = panel(make_figure([at_zero]), "unstable")
    assert not artists(ax, "unstable:") and "not measured: linearized at y = 0" in texts(ax)


def test_undefined_correlation_lengths_are_gaps_with_a_note():
    doc = make_analyze_result(1.5)
    for step in doc["steps"][10:16]:
        step["xi_denoised"] = None
    for step in doc["steps"]:
        step["xi_state"] = None
    ax = panel(make_figure([doc]), "xi")
    y = ax_line(ax, "xi_denoised:0").get_ydata()
    assert np.isnan(y).sum() == 6 and not (np.nan_to_num(y, nan=1.0) <= 0).any()
    assert "xi_state:0" not in artists(ax, "xi_state")  # undefined everywhere: no line, a note
    assert "ξ(D(y)) undefined at 6 of 40 steps (gaps)" in texts(ax)
    assert "ξ(y) undefined at every step" in texts(ax)
    old = old_result()  # diffcrit 0.1.0 wrote 0.0 where xi was undefined: also a gap
    old["steps"][5]["xi_denoised"] = 0.0
    assert np.isnan(ax_line(panel(make_figure([old]), "xi"), "xi_denoised:0").get_ydata()).sum() == 1


def test_markers_panel_lists_every_marker_with_its_ci95_presence_and_the_primary():
    doc = make_analyze_result(1.5)
    doc["critical"]["markers"]["xi_growth"].update(
        multimodal=True, modes=[{"t": 1.5, "share": 0.6, "ci95": [1.45, 1.55]},
                                {"t": 2.4, "share": 0.4, "ci95": [2.3, 2.5]}])
    doc["critical"]["markers"]["stiffness_zero"] = None
    fig = make_figure([doc])
    ax = panel(fig, "markers")
    ticks = [t.get_text() for t in ax.get_yticklabels()]
    assert ticks == ["decision* (primary)", *MARKER_NAMES[1:]]
    assert [t.get_fontweight() for t in ax.get_yticklabels()][0] == "bold"
    for name in set(MARKER_NAMES) - {"stiffness_zero"}:
        t_m = doc["critical"]["markers"][name]["t"]
        assert ci_of(ax, f"marker:{name}:0")[0] == pytest.approx([t_m - 0.08, t_m + 0.08])
    assert "marker:stiffness_zero:0" not in artists(ax, "marker:") and "not found" in texts(ax)
    assert list(ax_line(ax, "modes:xi_growth:0").get_xdata()) == [1.5, 2.4]
    assert "multimodal (2 modes)" in texts(ax) and "presence 100%" in texts(ax)
    everything = all_texts(fig)
    assert "consensus" not in everything and "DESIGN" + ".md" not in everything and "issue" not in everything


def test_primary_band_spans_the_curve_panels():
    fig = make_figure([make_analyze_result(1.5)])
    for name in CURVE_PANELS:
        band = artists(panel(fig, name), "critical-band")["critical-band"]
        assert span_of(band) == pytest.approx((1.42, 1.58))


def test_inconsistent_steps_are_shaded_and_named_in_the_legend():
    doc = make_analyze_result(1.5)
    for step in doc["steps"][:3]:  # the first steps of generation: the largest t
        step["x0_consistent"] = False
    doc["diagnostics"]["total_variance"]["inconsistent_steps"] = [0, 1, 2]
    fig = make_figure([doc])
    t = sorted(step["t"] for step in doc["steps"])
    for name in CURVE_PANELS:
        (span,) = artists(panel(fig, name), "inconsistent").values()  # three neighbours: one span
        lo, hi = span_of(span)
        assert t[-4] < lo < t[-3] and t[-1] < hi
    assert "x0 estimate inconsistent" in [t.get_text() for t in fig.legends[0].get_texts()]
    clean = make_figure([make_analyze_result(1.5)])
    assert not artists(panel(clean, "decided"), "inconsistent")
    assert "x0 estimate inconsistent" not in [t.get_text() for t in clean.legends[0].get_texts()]


def test_step_rug_marks_every_step_and_the_probed_ones_apart():
    fig = make_figure([make_analyze_result(1.5, probe_every=2)])
    for name in CURVE_PANELS:
        rug = artists(panel(fig, name), "steps")
        assert len(rug["steps-probed"].get_segments()) == 20 and len(rug["steps"].get_segments()) == 20
    assert "steps (tall: probed)" in [t.get_text() for t in fig.legends[0].get_texts()]


def test_overlay_keeps_a_line_style_per_result():
    docs = [make_analyze_result(1.5), make_analyze_result(2.0, steps=30, probe_every=2)]
    ax = panel(make_figure(docs, labels=["a", "b"]), "decided")
    assert ax_line(ax, "decided:0:0").get_linestyle() == "-" and ax_line(ax, "decided:1:0").get_linestyle() == "--"


def test_old_results_without_the_new_keys_still_draw(tmp_path):
    doc = old_result()
    fig = make_figure([doc])
    assert "decided fraction not in this result" in texts(panel(fig, "decided"))
    assert "instability fraction not in this result" in texts(panel(fig, "unstable"))
    ax = panel(fig, "markers")
    ticks = [t.get_text() for t in ax.get_yticklabels()]
    assert ticks == ["stiffness_zero", "stiffness_min", "xi_eq_peak", "xi_growth", "critical.t (median)"]
    assert "consensus" not in all_texts(fig)
    assert artists(panel(fig, "xi"), "xi_eq:0") and artists(panel(fig, "stiffness"), "stiffness:0:0")
    assert_drawn_png(plot_results([doc, make_analyze_result(1.7)], tmp_path / "old-and-new.png"))
    if EXAMPLE_OLD_RESULT.exists():  # one written by diffcrit 0.1.0 itself
        assert_drawn_png(plot_results([json.loads(EXAMPLE_OLD_RESULT.read_text())], tmp_path / "example.png"))

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


def test_image_grid_frames_each_tile_and_fills_missing_cells_white():
    import torch

    from diffcrit.report.grids import image_grid, tiles

    images = torch.stack([torch.full((1, 2, 3), v) for v in (-1.0, 0.0, 1.0)])  # black, mid grey, white
    grid = np.asarray(image_grid(tiles(images), cols=2))
    assert grid.shape == (2 * 4, 2 * 5)  # 2 x 2 cells of (2 + 2) x (3 + 2) pixels, grey
    assert (grid[1:3, 1:4] == 0).all() and (grid[1:3, 6:9] == 128).all() and (grid[5:7, 1:4] == 255).all()
    framed = grid.copy()
    framed[1:3, 1:4] = framed[1:3, 6:9] = 255
    assert (framed == 255).all()  # frames and the fourth, empty cell are white
    rgb = image_grid(tiles(torch.zeros(2, 3, 4, 4)), cols=2)
    assert rgb.mode == "RGB" and rgb.size == (12, 6)


def test_one_model_twice_is_labelled_by_its_conditioning():
    """Overlaying a model's unguided and guided runs: the default labels say which is which."""
    from diffcrit.report.figures import _labels
    from diffcrit.report.view import view

    plain, guided, same = (make_analyze_result(0.4) for _ in range(3))
    for doc, cfg in ((plain, None), (guided, {"scale": 3.0, "null_class": 10}), (same, None)):
        doc["model"].update(id="builtin:digits", conditioning={"type": "class", "class_label": 3,
                                                              **({"cfg": cfg} if cfg else {})})
    assert _labels([view(plain), view(guided)], None) == ["builtin:digits (class 3)", "builtin:digits (class 3, CFG 3)"]
    assert _labels([view(plain), view(same)], None) == ["builtin:digits (class 3) #1", "builtin:digits (class 3) #2"]
    assert _labels([view(make_analyze_result(0.4))], None) == [make_analyze_result(0.4)["model"]["id"]]
