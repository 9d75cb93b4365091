import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

# Idle OpenMP threads sleep instead of spinning: on a busy 2-core machine spinning makes tiny
# convolutions 10-30x slower. Must be set before torch loads its OpenMP runtime.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# The hub's folders for the whole session in a temporary HF_HOME, so no test reads or writes the user's
# ~/.cache/huggingface (its hub cache, diffcrit's result cache); set before huggingface_hub reads them at import.
# Subprocesses inherit it. Each test then gets an empty result cache of its own (``own_result_cache``).
HF_HOME = tempfile.mkdtemp(prefix="diffcrit-tests-hf-home-")
atexit.register(shutil.rmtree, HF_HOME, ignore_errors=True)
os.environ["HF_HOME"] = HF_HOME
for _name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_ASSETS_CACHE", "HUGGINGFACE_ASSETS_CACHE"):
    os.environ.pop(_name, None)

import pytest  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
torch.set_num_threads(2)

import json  # noqa: E402

from tiny_models import CLASSES, save_ddpm_pipeline, save_dit_pipeline  # noqa: E402
from diffusers import DDIMScheduler  # noqa: E402
from result_factory import make_analyze_result  # noqa: E402


@pytest.fixture(autouse=True)
def own_result_cache(tmp_path_factory, monkeypatch):
    """An empty result cache (analysis/cache.py) for every test: no test is served a t_c another test measured."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_ASSETS_CACHE", str(tmp_path_factory.mktemp("hf-assets")))


@pytest.fixture(scope="session")
def ddpm_folder(tmp_path_factory) -> Path:
    return save_ddpm_pipeline(tmp_path_factory.mktemp("ddpm"))


@pytest.fixture(scope="session")
def ddim_folder(tmp_path_factory) -> Path:
    return save_ddpm_pipeline(tmp_path_factory.mktemp("ddim"), DDIMScheduler)


@pytest.fixture(scope="session")
def dit_folder(tmp_path_factory) -> Path:
    return save_dit_pipeline(tmp_path_factory.mktemp("dit"))


@pytest.fixture(scope="session")
def cond_folder(tmp_path_factory) -> Path:
    """The tiny class-conditional UNet pipeline (CLASSES classes and a null id)."""
    return save_ddpm_pipeline(tmp_path_factory.mktemp("cond"), num_class_embeds=CLASSES + 1)


@pytest.fixture(scope="session")
def torchscript_classifier(tmp_path_factory) -> Path:
    """A TorchScript classifier for the tiny UNet's 1x8x8 images: CLASSES logits."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, CLASSES))
    path = tmp_path_factory.mktemp("clf") / "classifier.pt"
    torch.jit.save(torch.jit.script(model), str(path))
    return path


@pytest.fixture(scope="session")
def critical_json(tmp_path_factory) -> Path:
    """An analyze result whose t_c (0.45) sits inside the tiny schedule's t range [0, 0.84]."""
    path = tmp_path_factory.mktemp("crit") / "critical.json"
    path.write_text(json.dumps(make_analyze_result(0.45, ci_halfwidth=0.03)))
    return path


def pytest_collection_modifyitems(config, items):
    """Tests marked ``cuda`` skip, saying why, where no CUDA device is available."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device: torch.cuda.is_available() is False")
    for item in items:
        if item.get_closest_marker("cuda") is not None:
            item.add_marker(skip)
