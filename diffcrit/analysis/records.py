"""What a run records, per step: the block store ``StepRows`` and the ``Records`` of one analyze run."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..spectral.fourier import LowBins
from ..sampling.steppers import StepInfo


class StepRows:
    """One kind of per-step array (e.g. gains (P, M)) for every step, in one block (S, ...).

    Reads like the list of per-step rows the estimators take (``len``, index, iterate; a step not
    recorded is None) and grows with ``append``. Why one block: a per-step numpy array kept in a
    list is a small allocation that outlives its step; made between the step's large temporaries
    (FFTs, activations) it splits their freed space in glibc's heap, and peak RSS then grows by
    about one such temporary per step (0.25 MB a step on a 16 x 32 x 32 batch). Copied into a
    block, the records cost only their own bytes.
    """

    def __init__(self, capacity: int = 0):
        self.capacity = capacity
        self.block: np.ndarray | None = None
        self.present = np.zeros(capacity, dtype=bool)
        self.count = 0

    @classmethod
    def of(cls, rows: np.ndarray) -> "StepRows":
        """All rows of an (S, ...) array."""
        out = cls(len(rows))
        out.block, out.present[:], out.count = np.array(rows), True, len(rows)
        return out

    def append(self, value: np.ndarray | None) -> None:
        self.count += 1
        self[self.count - 1] = value

    def __setitem__(self, step: int, value: np.ndarray | None) -> None:
        if step >= self.capacity:
            self._grow(max(step + 1, 2 * self.capacity))
        if value is None:
            self.present[step] = False
            return
        value = np.asarray(value)
        if self.block is None:
            self.block = np.zeros((self.capacity, *value.shape), dtype=value.dtype)
        self.block[step] = value
        self.present[step] = True

    def _grow(self, capacity: int) -> None:
        self.present = np.concatenate([self.present, np.zeros(capacity - self.capacity, dtype=bool)])
        if self.block is not None:
            self.block = np.concatenate([self.block, np.zeros((capacity - self.capacity, *self.block.shape[1:]),
                                                              dtype=self.block.dtype)])
        self.capacity = capacity

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, step: int) -> np.ndarray | None:
        if not -self.count <= step < self.count:
            raise IndexError(step)
        step %= self.count
        return self.block[step] if self.present[step] else None

    def __iter__(self):
        return (self[i] for i in range(self.count))


@dataclass
class Records:
    """Everything measured along the run, per step (S steps, N samples, P probe points, M directions).

    Only small per-step arrays, each kind in one block (StepRows): no field of a whole step is kept.
    """

    infos: list[StepInfo] = field(default_factory=list)
    gains: StepRows = field(default_factory=StepRows)  # (P, M), None when not probed
    # (N, C, Q) complex at the low bins (this rank's rows while sampling)
    coef_state: StepRows = field(default_factory=StepRows)
    coef_denoised: StepRows = field(default_factory=StepRows)
    coef_final: np.ndarray | None = None  # (N, C, Q) complex: the final samples x0
    # the Gaussian null sampled by the model's sampler (sampling/null.py): D(y) per step and x0, as above
    null_denoised: StepRows = field(default_factory=StepRows)
    null_final: np.ndarray | None = None
    bins: LowBins | None = None
    trajectories: bool = True  # probe points on trajectories (else y = 0)
    probe_method: str = "none"
    probe_note: str | None = None
    schedule: dict = field(default_factory=dict)
    branch_states: dict = field(default_factory=dict)  # --clones: {step: y (n, C, H, W)} while sampling
    # --clones: {branch step: [coefficients (N, C, Q) complex of each clone's final sample]}, all ranks
    clone_coefs: dict = field(default_factory=dict)
    # --clones with a classifier: {branch step: [class (N,) int of each clone's final sample]}, all ranks; the class
    # of every trunk sample's own final (N,); what scored them (scorers.Scorer.info)
    clone_classes: dict = field(default_factory=dict)
    final_classes: np.ndarray | None = None
    # --clones with a classifier: {branch step: class (N,) int of each trunk final noised to the step and regenerated}
    regenerated_classes: dict = field(default_factory=dict)
    classifier: dict | None = None
    seconds: dict = field(default_factory=lambda: {"sampling_s": 0.0, "probing_s": 0.0})
    # the shell of each gain column (M,): the probe directions' shells, or 0..K-1 for one combination per shell
    # (--shell-gain hutchinson); None: the directions' (records built without a prober)
    gain_shell: np.ndarray | None = None
    probe_forwards: int = 0  # model rows spent by probing, all ranks (probing/prober.py)

    def shell_of_gains(self, direction_shell: np.ndarray) -> np.ndarray:
        """(M,) the shell of each column of ``gains``; ``direction_shell``: the probe directions' (``shell``)."""
        return direction_shell if self.gain_shell is None else self.gain_shell

    @classmethod
    def for_steps(cls, infos: list[StepInfo]) -> "Records":
        n = len(infos)
        return cls(list(infos), *(StepRows(n) for _ in range(3)))
