import os
import sys
from pathlib import Path

# Idle OpenMP threads sleep instead of spinning: on a busy 2-core machine spinning makes tiny
# convolutions 10-30x slower. Must be set before torch loads its OpenMP runtime.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
torch.set_num_threads(2)

from tiny_models import save_ddpm_pipeline, save_dit_pipeline  # noqa: E402
from diffusers import DDIMScheduler  # noqa: E402


@pytest.fixture(scope="session")
def ddpm_folder(tmp_path_factory) -> Path:
    return save_ddpm_pipeline(tmp_path_factory.mktemp("ddpm"))


@pytest.fixture(scope="session")
def ddim_folder(tmp_path_factory) -> Path:
    return save_ddpm_pipeline(tmp_path_factory.mktemp("ddim"), DDIMScheduler)


@pytest.fixture(scope="session")
def dit_folder(tmp_path_factory) -> Path:
    return save_dit_pipeline(tmp_path_factory.mktemp("dit"))


def pytest_collection_modifyitems(config, items):
    """Tests marked ``cuda`` skip, saying why, where no CUDA device is available."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device: torch.cuda.is_available() is False")
    for item in items:
        if item.get_closest_marker("cuda") is not None:
            item.add_marker(skip)
