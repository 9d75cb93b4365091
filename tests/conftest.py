import sys
from pathlib import Path

import pytest
import torch

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
