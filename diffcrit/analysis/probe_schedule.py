"""Which steps get probed (``--probe-schedule``), and the probe points kept for probing later.

``every``: the steps 0, N, 2N, ... (N = ``--probe-every``) and the last, probed while sampling.

``auto``: a coarse pass while sampling, then refinement from the kept probe points, without
sampling again:
  1. while sampling, probe every ``coarse_stride(S, regime)``-th step and the last, and keep the
     probe points y (P, C, H, W) of every step (a temporary file, not memory);
  2. after sampling, probe the two steps around the decided fraction's crossing of 1/2 (trajectories:
     the ``decision`` marker, known without probes; trajectories turn unstable while their modes are
     decided, a window a sparse grid can step over), and find the brackets of the regime's refined
     markers (``REFINED``,
     docs/design.md §6) on the steps probed so far: the first probed step with unstable points and
     the one before it (``instability_onset``), the first resolved sign change of s at the lowest
     shell (``stiffness_zero``, detection.zero_crossing), the steps either side of the minimum of
     that s (``stiffness_min``; only where s varies by more than detection.STIFFNESS_DIP_FLOOR: a
     flat, round-off-level curve has no dip to resolve) and of the maximum of xi_eq (``xi_eq_peak``;
     where xi_eq is defined at two probed steps or more);
  3. probe the middle step of every bracket wider than one step, and repeat 2–3 until every
     bracket is two adjacent steps.
A refined marker then reads exactly the points dense probing would give it (the crossing between
two adjacent steps, the three-point parabola around the extremum), as long as the curve has one
crossing / one extremum within a coarse stride of the coarse one. The markers a regime does not
refine are read off the probed steps as they are; every probe-based marker's interval holds the
probed steps either side of it (detection.find_brackets).

The two regimes spend differently. Along trajectories the primary marker (``decision``) and
``xi_growth`` need no probes, a probed step costs P x K x 2 forwards (one probe per shell; P x M x 2
with --shell-gain directions), and the coarse pass is
sparse (4 points): the probes buy the stiffness curves and the onset. At y = 0 the primary marker
is ``stiffness_zero``, a probed step costs one point, and the pass is dense (12 points) and refines
every probe-based marker: a dip below 0 narrower than a stride is not missed there.
"""

from __future__ import annotations

import math
import tempfile

import numpy as np
import torch

from .detection import (INSTABILITY_ONSET, STIFFNESS_DIP_FLOOR, STIFFNESS_MIN, STIFFNESS_ZERO, XI_EQ_PEAK,
                                  zero_crossing)
from .estimators import STIFFNESS_RESOLUTION

# Coarse points across the trajectory in the auto schedule, per regime (stride = ceil(S / points)).
# y = 0: the coarse grid must put a point inside the narrowest probe-based feature on either side of
# its extremum. The narrowest seen, the stiffness dip of builtin:mixture, is 13% of the trajectory
# wide at half depth (6.5 of 50 steps); 1/12 = 8% spacing leaves a margin of 1.6. Along trajectories
# the onset and the zero crossing are bisected from any stride and nothing primary is probed, so the
# coarse points only bracket them and draw the stiffness curves: 4 (with the 2 steps around decision)
# keep the probes of 16 trajectories at 128 samples, 128 forwards per probed step, about an eighth of
# the sampling (bench/README.md).
COARSE_POINTS = {"trajectory": 4, "zero": 12}
# The markers whose brackets the auto schedule bisects to one step, per regime.
REFINED = {"trajectory": (INSTABILITY_ONSET, STIFFNESS_ZERO),
           "zero": (STIFFNESS_ZERO, STIFFNESS_MIN, XI_EQ_PEAK)}


def coarse_stride(n_steps: int, regime: str = "trajectory") -> int:
    """Stride of the auto schedule's coarse pass: about ``COARSE_POINTS[regime]`` coarse steps, at least 2 apart."""
    return max(2, math.ceil(n_steps / COARSE_POINTS[regime]))


def grid(n_steps: int, every: int) -> set[int]:
    """Steps 0, every, 2 every, ... and always the last."""
    return set(range(0, n_steps, every)) | {n_steps - 1}


def _neighbours(probed: np.ndarray, step: int) -> tuple[int | None, int | None]:
    """The probed steps just before and after ``step`` (None at an end)."""
    i = int(np.searchsorted(probed, step))
    before = int(probed[i - 1]) if i > 0 else None
    after = int(probed[i + 1]) if i + 1 < len(probed) else None
    return before, after


def _middles(step: int, neighbours: tuple[int | None, int | None]) -> set[int]:
    """Middle steps of the gaps between ``step`` and its probed neighbours that are wider than one step."""
    return {(step + n) // 2 if n > step else (step + n + 1) // 2
            for n in neighbours if n is not None and abs(n - step) > 1}


def refinement(probed: list[int], s_low: np.ndarray, xi_eq: np.ndarray, unstable: np.ndarray | None = None,
               markers: tuple[str, ...] = REFINED["zero"], focus: set[int] | frozenset = frozenset(),
               resolution: float = STIFFNESS_RESOLUTION) -> set[int]:
    """Steps to probe next so that the brackets of ``markers`` shrink (step 3 above).

    probed: the steps probed so far; s_low, xi_eq, unstable (the decision shell's instability
    fraction, trajectories only): (S,) per step, NaN where not probed or undefined. ``focus``: steps
    probed whatever the curves say (along trajectories the two steps around ``decision``: trajectories
    turn unstable while their modes are being decided, a window a sparse grid can step over).
    Returns an empty set when every bracket is two adjacent steps and every focus step is probed.
    """
    probed_steps = np.array(sorted(probed))
    wanted: set[int] = set(focus)
    if unstable is not None and INSTABILITY_ONSET in markers:  # last step with none unstable, first with some
        valid = probed_steps[np.isfinite(unstable[probed_steps])]
        positive = np.flatnonzero(unstable[valid] > 0)
        if positive.size and positive[0] > 0:
            wanted |= _middles(int(valid[positive[0]]), (int(valid[positive[0] - 1]), None))
    valid = probed_steps[np.isfinite(s_low[probed_steps])]
    if valid.size:
        s = s_low[valid]
        j = zero_crossing(s, resolution)
        if j is not None and STIFFNESS_ZERO in markers:
            wanted |= _middles(int(valid[j]), (None, int(valid[j + 1])))
        if np.ptp(s) > STIFFNESS_DIP_FLOOR and STIFFNESS_MIN in markers:
            lowest = int(valid[np.argmin(s)])
            wanted |= _middles(lowest, _neighbours(probed_steps, lowest))
    valid = probed_steps[np.isfinite(xi_eq[probed_steps])]
    if valid.size >= 2 and XI_EQ_PEAK in markers:  # a peak seen at one coarse point only is narrower than a stride
        peak = int(valid[np.argmax(xi_eq[valid])])
        wanted |= _middles(peak, _neighbours(probed_steps, peak))
    return wanted - set(probed)


class PointStore:
    """The probe points y (P, C, H, W) of every step, in a temporary file (memory stays flat).

    Written once per step while sampling, read back for the steps the auto schedule refines.
    """

    def __init__(self, n_steps: int, shape: tuple[int, ...]):
        self.shape = tuple(shape)
        self.count = int(np.prod(self.shape))
        self.file = tempfile.TemporaryFile(prefix="diffcrit-points-")
        self.file.truncate(n_steps * self.count * 4)

    def write(self, step: int, points: torch.Tensor) -> None:
        data = points.detach().float().cpu().contiguous().numpy()
        assert data.shape == self.shape, (data.shape, self.shape)
        self.file.seek(step * self.count * 4)
        self.file.write(data.tobytes())

    def read(self, step: int) -> torch.Tensor:
        self.file.seek(step * self.count * 4)
        data = np.frombuffer(self.file.read(self.count * 4), dtype=np.float32)
        return torch.from_numpy(data.copy()).view(self.shape)

    def close(self) -> None:
        self.file.close()


__all__ = ["COARSE_POINTS", "REFINED", "coarse_stride", "grid", "refinement", "PointStore"]
