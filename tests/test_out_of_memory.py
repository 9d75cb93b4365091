"""A forward that runs out of GPU memory is split into smaller ones (rows are independent: nothing changes but the
peak memory); one that cannot fit a single sample is one line. Simulated on the CPU: the model raises CUDA's
OutOfMemoryError above a row count."""

import dataclasses
import warnings

import numpy as np
import pytest
import torch

import diffcrit
from cli_checks import one_line_error, run
from diffcrit.config import make_config
from diffcrit.errors import DiffcritWarning
from diffcrit.models.loading import load_model

OPTIONS = dict(steps=6, samples=4, batch_size=4, device="cpu", probe_samples=2, directions=2, shells=3, bootstrap=0,
               probe_schedule="every", probe="fd", guidance_scale=2.0, class_label=1)


def limited(loaded, rows: int, calls: list):
    """The loaded model, its network call raising OutOfMemoryError on more than ``rows`` rows (``calls``: rows
    of every call that ran)."""
    denoiser = loaded.denoiser
    call = denoiser.family.call

    def small_only(module, x, timestep, cond):
        if x.shape[0] > rows:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        calls.append(x.shape[0])
        return call(module, x, timestep, cond)

    denoiser.family = dataclasses.replace(denoiser.family, call=small_only)
    return loaded


def test_forwards_split_after_out_of_memory_change_nothing(cond_folder):
    """Sampling (guided: [x; x] rows), finite-difference probes (many rows) and the result are those of the
    unsplit run, and the forwards then stay at the size that fit."""
    whole = diffcrit.analyze(str(cond_folder), **OPTIONS)
    calls = []
    loaded = limited(load_model(str(cond_folder), *[make_config(**OPTIONS)] * 2), 3, calls)
    with pytest.warns(DiffcritWarning, match="split to at most"):
        split = diffcrit.analyze(str(cond_folder), loaded=loaded, **OPTIONS)
    assert max(calls) <= 3 and loaded.denoiser.max_rows <= 3
    torch.testing.assert_close(split.samples, whole.samples, atol=1e-5, rtol=0)
    stiffness = [[s["stiffness"] for s in r.to_dict()["steps"] if s["stiffness"]] for r in (whole, split)]
    # float32 finite differences resolve stiffness to ~1e-4; other batch shapes move the round-off (3e-5 here)
    np.testing.assert_allclose(stiffness[1], stiffness[0], atol=1e-4, rtol=0)


def test_a_model_that_cannot_fit_one_sample_is_one_line(cond_folder, monkeypatch):
    import diffcrit.models.loading as loading

    real = loading.load_diffusers

    def nothing_fits(*args, **kwargs):
        return limited(real(*args, **kwargs), 0, [])

    monkeypatch.setattr(loading, "load_diffusers", nothing_fits)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DiffcritWarning)
        result = run("analyze", "--model", cond_folder, "--class-label", "1", "--steps", "3", "--quiet")
    one_line_error(result, "out of memory", "one sample per forward")


def test_the_cli_prints_the_split_as_one_warning_line(cond_folder, monkeypatch, tmp_path):
    import diffcrit.models.loading as loading

    real = loading.load_diffusers
    monkeypatch.setattr(loading, "load_diffusers", lambda *a, **k: limited(real(*a, **k), 2, []))
    result = run("analyze", "--model", cond_folder, "--class-label", "1", "--steps", "3", "--samples", "4",
                 "--bootstrap", "0", "--quiet", "--out", tmp_path / "result.json")
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if "out of memory" in line]
    assert len(lines) == 1 and lines[0].startswith("warning: out of memory on cpu: forwards split to at most 2 rows"), \
        result.output
