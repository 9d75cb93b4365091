"""On a CUDA device: the sampler, forward-mode AD through fused attention, bfloat16 (docs/scale.md, CUDA tests).

Marked ``cuda``; conftest.py skips them where ``torch.cuda.is_available()`` is false. TF32 is off
here so float32 on the GPU is float32 (cuDNN convolutions use TF32 by default).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import DDPMPipeline

import diffcrit

pytestmark = pytest.mark.cuda

DEVICE = "cuda"
ANALYSIS = dict(probe_samples=1, directions=1, shells=2, bootstrap=0)
PROBED = dict(probe_samples=2, directions=2, shells=3, bootstrap=0, probe_schedule="every")


@pytest.fixture(autouse=True)
def exact_float32():
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def generators(n, seed=0):
    return [torch.Generator("cpu").manual_seed(seed + i) for i in range(n)]


def stiffness(result) -> np.ndarray:
    """(probed steps, shells) stiffness, in step order."""
    return np.array([step["stiffness"] for step in result.to_dict()["steps"] if step["stiffness"] is not None])


def test_samples_on_cuda_equal_cpu_and_ddpm_pipeline(ddpm_folder):
    """Noise from per-sample CPU generators: the same trajectories on both devices and in diffusers."""
    on_cpu = diffcrit.analyze(str(ddpm_folder), steps=8, samples=3, device="cpu", **ANALYSIS)
    on_gpu = diffcrit.analyze(str(ddpm_folder), steps=8, samples=3, device=DEVICE, **ANALYSIS)
    assert on_gpu.to_dict()["environment"]["device"].startswith("cuda")
    torch.testing.assert_close(on_gpu.samples.cpu(), on_cpu.samples, atol=1e-4, rtol=0)
    pipe = DDPMPipeline.from_pretrained(ddpm_folder).to(DEVICE)
    images = pipe(batch_size=3, generator=generators(3), num_inference_steps=8, output_type="np").images
    expected = torch.from_numpy(images).permute(0, 3, 1, 2)
    torch.testing.assert_close((on_gpu.samples.cpu() / 2 + 0.5).clamp(0, 1), expected, atol=1e-4, rtol=0)


@pytest.mark.parametrize("folder_fixture,options", [("ddpm_folder", {}), ("dit_folder", {"class_label": 1})],
                         ids=["unet-attention", "dit"])
def test_jvp_through_fused_attention_equals_finite_differences(folder_fixture, options, request):
    """CUDA picks fused SDPA kernels (no forward derivative); --probe jvp must still run and agree with FD."""
    folder = str(request.getfixturevalue(folder_fixture))
    by_jvp = diffcrit.analyze(folder, steps=6, samples=2, device=DEVICE, probe="jvp", **PROBED, **options)
    by_fd = diffcrit.analyze(folder, steps=6, samples=2, device=DEVICE, probe="fd", **PROBED, **options)
    assert by_jvp.to_dict()["environment"]["probe_method"] == "jvp"
    s_jvp, s_fd = stiffness(by_jvp), stiffness(by_fd)
    assert s_jvp.shape == s_fd.shape and len(s_jvp) == 6
    np.testing.assert_allclose(s_jvp, s_fd, rtol=0, atol=1e-3)


def test_bfloat16_runs_with_finite_curves_close_to_float32(ddpm_folder):
    """bfloat16 samples in bfloat16 and probes by FD on a float32 copy (docs/scale.md "Memory and precision")."""
    half = diffcrit.analyze(str(ddpm_folder), steps=8, samples=2, device=DEVICE, dtype="bfloat16", **PROBED)
    full = diffcrit.analyze(str(ddpm_folder), steps=8, samples=2, device=DEVICE, dtype="float32", **PROBED)
    steps = half.to_dict()["steps"]
    assert all(np.isfinite(step[key]) for step in steps for key in ("xi_state", "xi_denoised"))
    s_half, s_full = stiffness(half), stiffness(full)
    assert len(s_half) == 8 and np.isfinite(s_half).all()
    assert torch.isfinite(half.samples.float()).all()
    np.testing.assert_allclose(s_half, s_full, rtol=0, atol=1e-2)  # 5e-4 apart on CPU; s spans ~0.1 here


def test_guided_text_transformer_on_cuda_equals_cpu_and_jvp_equals_fd(tmp_path):
    """SD3's joint attention (fused SDPA on CUDA) under classifier-free guidance: the same samples as on the CPU,
    and JVP probes of the guided denoiser agree with finite differences."""
    pytest.importorskip("transformers")
    from tiny_transformers import save_sd3_pipeline

    folder = str(save_sd3_pipeline(tmp_path / "sd3"))
    options = dict(prompt="a red barn", guidance_scale=3.0, negative_prompt="a blue sky", steps=4, samples=2)
    on_cpu = diffcrit.analyze(folder, device="cpu", **options, **ANALYSIS)
    on_gpu = diffcrit.analyze(folder, device=DEVICE, **options, **ANALYSIS)
    torch.testing.assert_close(on_gpu.samples.cpu(), on_cpu.samples, atol=1e-4, rtol=0)
    by_jvp = diffcrit.analyze(folder, device=DEVICE, probe="jvp", **options, **PROBED)
    by_fd = diffcrit.analyze(folder, device=DEVICE, probe="fd", **options, **PROBED)
    np.testing.assert_allclose(stiffness(by_jvp), stiffness(by_fd), rtol=0, atol=1e-3)
