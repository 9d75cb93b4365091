"""bench/bench_sizes.py builds the real configs: their parameter counts, on the meta device (no weights; about
1 s, so it runs with the fast tests)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from bench_sizes import parameter_counts  # noqa: E402

# The published sizes: google/ddpm-cifar10-32 35.7 M, SD 1.5's UNet 859.5 M, SD3 medium's transformer 2.03 B;
# facebook/DiT-XL-2-256 as diffusers stores it (the paper's 675 M plus a timestep and class embedding per block).
EXPECTED = {"ddpm-cifar10-32": 35_746_307, "dit-xl-2-256": 749_826_464, "sd15-unet": 859_520_964,
            "sd3-medium": 2_028_328_000}


def test_dry_run_counts_the_real_configs_parameters():
    assert parameter_counts() == EXPECTED
