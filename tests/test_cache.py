"""The hub's own settings and the result cache (docs/models.md "Which weights: model.revision", docs/outputs.md "The
result cache"): HF_HUB_OFFLINE is --offline, HF_HOME decides where the hub cache is read, a hub model's commit is
recorded, a token never reaches an output; guide reuses an earlier t_c of the same weights and config without
sampling, and a cache that misbehaves never fails a run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import diffusers
import pytest
import torch
from cli_checks import FAST, run
from huggingface_hub import constants
from tiny_models import save_ddpm_pipeline, tiny_unet

import diffcrit
from diffcrit.analysis.cache import LIBRARY, NAMESPACE, SOURCE, SUBFOLDER
from diffcrit.errors import DiffcritWarning
from diffcrit.guidance.engine import suggest

TINY = dict(steps=4, samples=2, device="cpu", probe_samples=1, directions=1, shells=2, bootstrap=0)
# builtin:digits finds a decision time at these settings (a random-weight tiny UNet has none)
MEASURE = dict(steps=10, analyze_samples=8, device="cpu", bootstrap=0, window_width=0.4)
SUGGEST = ["guide", "--suggest", "-m", "builtin:digits", "--steps", "10", "--analyze-samples", "8", "--bootstrap", "0",
           "--window-width", "0.4", "--device", "cpu", "--quiet"]


@pytest.fixture
def forwards(monkeypatch) -> list:
    """Every UNet2DModel forward from now on (one entry per call)."""
    calls, real = [], diffusers.UNet2DModel.forward
    monkeypatch.setattr(diffusers.UNet2DModel, "forward", lambda self, *a, **k: calls.append(1) or real(self, *a, **k))
    return calls


def entries() -> list[Path]:
    folder = Path(constants.HF_ASSETS_CACHE) / LIBRARY / NAMESPACE / SUBFOLDER
    return sorted(folder.glob("*.json")) if folder.is_dir() else []


# --------------------------------------------------------------------------------------------
# guide takes a t_c from the cache: no sampling

def test_guide_reuses_a_kept_t_c_without_sampling(forwards):
    measured = suggest("builtin:digits", **MEASURE)
    assert len(forwards) > 0 and measured["critical"]["source"].startswith("analyze (class 0, 8 samples")
    assert len(entries()) == 1  # kept under HF_ASSETS_CACHE/diffcrit/results/analyze

    forwards.clear()
    hit = run(*SUGGEST)
    assert hit.exit_code == 0, hit.output
    cached = json.loads(hit.stdout)["critical"]
    assert forwards == []  # no sampling forward at all
    assert cached["source"] == f"{SOURCE} {entries()[0]}: {measured['critical']['source']}"
    assert {k: v for k, v in cached.items() if k != "source"} == \
        {k: v for k, v in measured["critical"].items() if k != "source"}

    forwards.clear()
    bypassed = run(*SUGGEST, "--no-cache")
    assert bypassed.exit_code == 0, bypassed.output
    assert len(forwards) > 0 and json.loads(bypassed.stdout)["critical"]["source"].startswith("analyze (")

    forwards.clear()
    suggest("builtin:digits", **{**MEASURE, "analyze_samples": 6})  # another config: a miss
    assert len(forwards) > 0 and len(entries()) == 2


# --------------------------------------------------------------------------------------------
# The key: the weights and the config; what is never kept

def test_changed_weights_miss_and_a_local_folder_has_a_fingerprint(tmp_path, forwards):
    folder = save_ddpm_pipeline(tmp_path / "model")
    first = diffcrit.analyze(str(folder), **TINY)
    revision = first.to_dict()["model"]["revision"]
    assert revision.startswith("sha256:") and first.to_dict()["model"]["revision_requested"] is None
    again = diffcrit.analyze(str(folder), reuse=True, **TINY)
    assert again.cache_entry == entries()[0] and again.to_dict() == first.to_dict()
    assert diffcrit.analyze(str(folder), reuse=True, **{**TINY, "seed": 1}).cache_entry is None  # config changed

    tiny_unet(seed=1).save_pretrained(folder / "unet")  # other weights, same names and sizes
    forwards.clear()
    changed = diffcrit.analyze(str(folder), reuse=True, **TINY)
    assert changed.cache_entry is None and len(forwards) > 0
    assert changed.to_dict()["model"]["revision"] not in (None, revision)


def test_no_cache_writes_nothing_and_analytic_models_are_never_kept(ddpm_folder):
    diffcrit.analyze(str(ddpm_folder), cache=False, **TINY)
    assert entries() == []
    ok = run("analyze", "-m", ddpm_folder, *FAST, "--no-cache")
    assert ok.exit_code == 0, ok.output
    assert entries() == []
    document = diffcrit.analyze("builtin:mixture", **TINY).to_dict()  # the model is code: no revision, not kept
    assert "revision" not in document["model"] and entries() == []
    held = diffusers.DiffusionPipeline.from_pretrained(ddpm_folder)  # in memory it may differ from the folder
    document = diffcrit.analyze(held, **TINY).to_dict()
    assert "revision" not in document["model"] and entries() == []
    ok = run("analyze", "-m", ddpm_folder, *FAST)
    assert ok.exit_code == 0 and len(entries()) == 1
    with torch.no_grad():  # a held pipeline changed in memory is measured, never served the folder's result
        held.unet.conv_out.bias.add_(1.0)
    assert diffcrit.analyze(held, reuse=True, **TINY).cache_entry is None


# --------------------------------------------------------------------------------------------
# A cache that misbehaves never fails a run

def test_a_corrupt_entry_is_ignored_measured_again_and_overwritten(ddpm_folder):
    diffcrit.analyze(str(ddpm_folder), **TINY)
    (entry,) = entries()
    entry.write_text('{"schema_version": 1, "kind": "analyze"')  # cut short
    with pytest.warns(DiffcritWarning, match="ignored a result cache entry"):
        measured = diffcrit.analyze(str(ddpm_folder), reuse=True, **TINY)
    assert measured.cache_entry is None and measured.samples is not None
    assert diffcrit.analyze(str(ddpm_folder), reuse=True, **TINY).cache_entry == entry  # written anew


def test_an_unwritable_cache_is_a_warning(ddpm_folder, monkeypatch, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setattr(constants, "HF_ASSETS_CACHE", str(blocker))  # the cache folder cannot be made
    with pytest.warns(DiffcritWarning, match="result cache could not be written"):
        result = diffcrit.analyze(str(ddpm_folder), reuse=True, **TINY)
    assert result.to_dict()["critical"] is not None
    ok = run("analyze", "-m", ddpm_folder, *FAST[:-1])
    assert ok.exit_code == 0 and "warning: the result cache could not be written" in ok.output


# --------------------------------------------------------------------------------------------
# The hub's own settings

def hub_layout(home: Path, repo: str, sha: str) -> None:
    """A hub cache as huggingface_hub writes it: models--owner--name/{blobs, refs/main, snapshots/<sha>} with the
    snapshot's files links to their blobs."""
    root = home / "hub" / ("models--" + repo.replace("/", "--"))
    snapshot = save_ddpm_pipeline(root / "snapshots" / sha)
    (root / "blobs").mkdir()
    for i, file in enumerate(sorted(p for p in snapshot.rglob("*") if p.is_file())):
        blob = root / "blobs" / f"blob{i}"
        shutil.move(file, blob)
        file.symlink_to(os.path.relpath(blob, file.parent))
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text(sha)


def test_hf_home_offline_by_environment_records_the_commit_and_never_the_token(tmp_path):
    """In a fresh process (huggingface_hub reads HF_HOME at import): HF_HUB_OFFLINE=1 without --offline reads the
    hub cache under HF_HOME, never the network; --revision main resolves to the snapshot's commit."""
    home, sha, token = tmp_path / "hf-home", "0123456789abcdef0123456789abcdef01234567", "hf_NeverWriteThisToken42"
    hub_layout(home, "owner/tiny", sha)
    env = {**os.environ, "HF_HOME": str(home), "HF_HUB_OFFLINE": "1", "HF_TOKEN": token}
    done = subprocess.run([sys.executable, "-m", "diffcrit", "analyze", "-m", "owner/tiny", "--revision", "main",
                           *FAST, "--device", "cpu"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    model = json.loads(done.stdout)["model"]
    assert (model["revision"], model["revision_requested"]) == (sha, "main")
    (entry,) = (home / "assets" / LIBRARY / NAMESPACE / SUBFOLDER).glob("*.json")
    assert json.loads(entry.read_text())["model"]["revision"] == sha
    assert token not in done.stdout + done.stderr + entry.read_text()


def test_hf_hub_offline_gives_what_offline_gives(monkeypatch):
    flag = run("analyze", "--model", "someone/missing-model", "--offline", *FAST)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    environment = run("analyze", "--model", "someone/missing-model", *FAST)
    assert flag.exit_code == environment.exit_code == 2
    assert environment.output == flag.output  # one message, word for word


def test_reproduce_reads_the_cache_and_says_so(ddpm_folder, forwards, tmp_path):
    from diffcrit.progress import ignore
    from diffcrit.reproduction import battery

    model = str(ddpm_folder)
    runner = battery.Runner(battery.QUICK, tmp_path, ignore, None)
    first, _, _ = runner.analyze(model, **TINY)
    assert runner.cached == [] and len(forwards) > 0
    forwards.clear()
    second, _, _ = runner.analyze(model, **TINY)
    assert runner.cached == [model] and forwards == [] and second == first
    off = battery.Runner(battery.QUICK, tmp_path, ignore, None, cache=False)
    off.analyze(model, **TINY)
    assert off.cached == [] and len(forwards) > 0
