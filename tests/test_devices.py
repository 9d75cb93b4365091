"""--device names auto, cpu, cuda, cuda:N or mps; one that does not exist is one line before any work, and the
device used is recorded."""

from __future__ import annotations

import pytest
import torch

import diffcrit
from diffcrit.config import make_config
from diffcrit.errors import UserError
from diffcrit.models.loading import resolve_device
from cli_checks import one_line_error, run

FAST = dict(steps=4, samples=2, bootstrap=0, shells=2, directions=1)


@pytest.mark.parametrize("name", ["auto", "cpu", "cuda", "cuda:0", "cuda:7", "mps"])
def test_device_names_are_accepted(name):
    assert make_config(device=name).device == name


@pytest.mark.parametrize("name", ["gpu", "cuda:", "cuda:x", "cuda:-1", "CPU", ""])
def test_other_device_names_are_refused_naming_the_choices(name):
    with pytest.raises(UserError, match="`device` must be one of auto, cpu, cuda, cuda:N, mps") as refused:
        make_config(device=name)
    assert refused.value.option == "device"


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")
def test_cuda_n_on_a_cpu_machine_is_one_line():
    one_line_error(run("analyze", "--device", "cuda:0", "--quiet"), "--device cuda:0: no CUDA device is available")
    with pytest.raises(UserError, match="no CUDA device"):
        diffcrit.analyze("builtin:mixture", device="cuda:1", **FAST)


def test_a_cuda_index_beyond_the_machine_is_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(UserError, match=r"has 2 CUDA device\(s\), cuda:0..cuda:1"):
        resolve_device("cuda:2")
    assert resolve_device("cuda:1") == torch.device("cuda", 1)


def test_mps_without_mps_is_one_line(monkeypatch):
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(UserError, match="no MPS device"):
        resolve_device("mps")


def test_the_device_used_is_recorded():
    document = diffcrit.analyze("builtin:mixture", device="cpu", **FAST).to_dict()
    assert document["config"]["device"] == "cpu" and document["environment"]["device"] == "cpu"


def test_a_fixed_gpu_under_a_launcher_is_refused(monkeypatch):
    from diffcrit import distributed

    monkeypatch.setattr(distributed, "launched", lambda: True)
    with pytest.raises(UserError, match="every process takes its own GPU"):
        distributed.current("cuda:1")
