"""Memory does not grow with the number of steps; half-precision models are probed in float32."""

import copy
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from diffcrit.config import make_config
from diffcrit.analysis.records import Records, StepRows
from diffcrit.probing.prober import Prober
from diffcrit.distributed import Ranks
from diffcrit.sampling.steppers import step_infos
from diffcrit.spectral.fourier import plane_wave_directions
from diffcrit.models.loading import load_model
from diffcrit.probing.probes import mode_gains

PEAK_RSS = """
import json, resource, sys, diffcrit
peaks = []
for steps in (100, 1000):
    diffcrit.analyze("builtin:gaussian?size=32", steps=steps, samples=16, bootstrap=0, probe_schedule="auto",
                     save_states=f"{sys.argv[1]}/states{steps}")
    peaks.append(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
print(json.dumps(peaks))
"""


@pytest.mark.slow
def test_peak_memory_with_1000_steps_is_that_with_100(tmp_path):
    """Streamed states and per-step records: 10x the steps costs < 10% more peak RSS.

    One process runs 100 then 1000 steps; the peak after the second run includes whatever grows
    with steps. Holding each step's y and D(y) would add 128 MB at 1000 steps; a per-step array kept
    between the step's FFT temporaries (heap fragmentation, see analysis.records.StepRows) added ~250 MB.
    """
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": "2"}
    # States go to tmpfs where there is one: each step is fsync'ed (states.py), 2000 syncs on a disk take ~15 s.
    shm = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    with tempfile.TemporaryDirectory(dir=shm or tmp_path) as folder:
        done = subprocess.run([sys.executable, "-c", PEAK_RSS, folder], env=env, capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        assert len(json.loads((Path(folder) / "states1000" / "index.json").read_text())["steps"]) == 1000
    short, long = json.loads(done.stdout.strip().splitlines()[-1])
    assert long <= 1.10 * short, (short, long)


def test_step_rows_read_like_a_list_of_rows():
    rows = StepRows(3)
    rows.append(np.ones((2, 2)))
    rows.append(None)
    rows.append(2 * np.ones((2, 2)))
    assert len(rows) == 3 and rows[1] is None and rows[-1][0, 0] == 2
    assert [r is None for r in rows] == [False, True, False]
    rows[1] = np.zeros((2, 2))
    rows.append(np.ones((2, 2)))  # grows past its capacity
    assert len(rows) == 4 and rows.block.shape == (6, 2, 2) and np.stack(list(rows)).shape == (4, 2, 2)
    with pytest.raises(IndexError):
        rows[4]


def test_half_precision_model_is_probed_by_fd_on_a_float32_copy(ddpm_folder):
    """bf16 round-off (~4e-3) would swamp a difference of relative step 5e-3: FD runs on float32 weights."""
    config = make_config(steps=4, samples=2, probe_samples=2, directions=2, shells=3, device="cpu", dtype="bfloat16",
                         shell_gain="directions")
    loaded = load_model(str(ddpm_folder), config, config)
    assert loaded.half_precision and loaded.module.dtype == torch.bfloat16
    directions = plane_wave_directions(loaded.shape, config.shells, config.directions)
    records = Records.for_steps(step_infos(loaded, config.steps, config.karras))
    info = records.infos[1]
    points = torch.randn(2, *loaded.shape, generator=torch.Generator().manual_seed(0)) * (1 + info.sigma**2) ** 0.5
    prober = Prober(loaded, config, directions, Ranks())
    gains = prober.gains(1, info, points)
    assert prober.method == "fd" and "float32 copy" in prober.note
    assert loaded.module.dtype == torch.bfloat16  # sampling keeps the model's own precision

    def bound(module):
        denoiser = copy.copy(loaded.denoiser)
        denoiser.module = module
        return lambda z, rows: denoiser(z, torch.full((len(z),), info.sigma), torch.full((len(z),), info.timestep))

    upcast = copy.deepcopy(loaded.module).float()  # the same bf16 weights in float32: forward AD as reference
    exact = mode_gains(bound(upcast), points, directions.vectors, "jvp", config.fd_step, info.sigma, 64, upcast).numpy()
    np.testing.assert_allclose(gains, exact, atol=2e-3)
    half = mode_gains(bound(loaded.module), points, directions.vectors, "fd", config.fd_step, info.sigma, 64).numpy()
    assert np.abs(half - exact).max() > 10 * np.abs(gains - exact).max()  # why the copy is needed
