"""Mode gains at one step's probe points (docs/design.md §3): the probe method chosen once, a float32 copy
for finite differences of half-precision models, the probed vectors (every direction, or one random-sign combination
per shell: hutchinson.py) split over the processes, and the model rows spent."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch

from ..config import ProbingConfig
from ..distributed import Ranks
from ..errors import UserError, shorten
from ..models.cond import select_cond
from ..models.denoisers import CallableDenoiser
from ..models.loading import LoadedModel
from ..sampling.steppers import StepInfo
from ..spectral.fourier import ProbeDirections
from .hutchinson import point_tangents
from .probes import FORWARD_AD_ERRORS, forwards_per_pair, mode_gains


def _float_cond(cond: dict | None) -> dict | None:
    """Floating-point conditioning tensors in float32 (for the float32 probing copy of a half model)."""
    if cond is None:
        return None
    return {k: _float_cond(v) if isinstance(v, dict) else (v.float() if torch.is_floating_point(v) else v)
            for k, v in cond.items()}


class Prober:
    """Mode gains at one step's probe points; the probed vectors are split over the ranks (docs/design.md §3).

    ``shell_gain`` "directions": gains (P, M) along every direction of the probe set; "hutchinson": gains (P, K)
    along one random-sign combination of each shell's directions per point (hutchinson.py), signs seeded by
    (``seed``, record, point). ``shell`` (columns,) maps each gain column to its shell; ``forwards`` counts the
    model rows spent (all ranks; probes.forwards_per_pair).

    The method is chosen at the first probe (``auto``: finite differences for networks; JVP for
    callables, falling back to finite differences where forward AD fails; the same on every rank).
    Finite differences of a half-precision model run on a float32 copy of its weights:
    half-precision round-off (~1e-3) would swamp a difference of relative step 5e-3; the copy is
    made once, at the first probe. ``method`` ("none" until then) and ``note`` say what was used.
    """

    def __init__(self, loaded: LoadedModel, config: ProbingConfig, directions: ProbeDirections, ranks: Ranks,
                 seed: int = 0):
        self.loaded, self.config, self.ranks, self.directions, self.seed = loaded, config, ranks, directions, seed
        self.method, self.note = "none", None
        combined = config.shell_gain == "hutchinson"
        self.shell = np.arange(directions.n_shells) if combined else directions.shell.numpy()
        self.mine = ranks.split(len(self.shell))
        self.forwards = 0
        self.cond = loaded.conditioning(config.probe_samples)
        self.device = loaded.device
        self._fp32: tuple[Any, torch.nn.Module | None, dict | None] | None = None

    def gains(self, step: int, info: StepInfo, points: torch.Tensor) -> np.ndarray:
        """(P, columns) gains <v, J(y_p) v> at record ``step`` (sigma of ``info``), gathered over the ranks in
        column order."""
        vectors = self._vectors(step, points.shape[0])
        if self.method == "none":
            self.method, self.note = _choose_method(self.config, self.loaded)
            if self.method == "jvp" and self.config.probe == "auto":
                error = None
                try:
                    local = self._local(info, points, vectors, "jvp")
                except FORWARD_AD_ERRORS as err:
                    error = err
                if not self.ranks.any(error is not None):
                    return self._gather(local, "jvp")
                self.method = "fd"
                reason = f"{type(error).__name__}: {shorten(str(error), 120)}" if error else "on another rank"
                self.note = f"forward AD failed ({reason}); used finite differences"
        try:
            return self._gather(self._local(info, points, vectors, self.method), self.method)
        except FORWARD_AD_ERRORS as err:
            if self.method != "jvp":
                raise
            raise UserError(f"forward-mode AD (`probe` jvp) fails through this model: {type(err).__name__}: "
                            f"{shorten(str(err), 160)}", "use `probe` fd (or auto)", option="probe") from None

    def _vectors(self, step: int, n_points: int) -> torch.Tensor:
        """This rank's probed vectors: (M', C, H, W) directions shared by the points, or (P, K', C, H, W) shell
        combinations of each point."""
        if self.config.shell_gain == "directions":
            return self.directions.vectors[self.mine.start:self.mine.stop]
        return point_tangents(self.directions, self.seed, step, range(n_points))[:, self.mine.start:self.mine.stop]

    def _gather(self, local: np.ndarray, method: str) -> np.ndarray:
        self.forwards += local.shape[0] * len(self.shell) * forwards_per_pair(method)
        if self.ranks.world == 1:
            return local
        return self.ranks.all_rows(torch.from_numpy(local.T.copy())).numpy().T.copy()

    def _local(self, info: StepInfo, points: torch.Tensor, vectors: torch.Tensor, method: str) -> np.ndarray:
        denoiser, module, cond = self._model_for(method)
        timestep = info.timestep

        def denoise_at(z: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
            sigma = torch.full((z.shape[0],), info.sigma, device=z.device)
            ts = None if timestep is None else torch.full((z.shape[0],), timestep, device=z.device)
            return denoiser(z, sigma, ts, select_cond(cond, rows))

        return mode_gains(denoise_at, points, vectors, method, self.config.fd_step, info.sigma,
                          self.config.probe_batch, module).numpy()

    def _model_for(self, method: str):
        """(denoiser, module, conditioning) to probe with: the model itself, or its float32 copy for FD in half
        precision."""
        loaded = self.loaded
        if method != "fd" or not loaded.half_precision or loaded.module is None:
            return loaded.denoiser, loaded.module, self.cond
        if self._fp32 is None:
            denoiser = copy.copy(loaded.denoiser)
            denoiser.module = copy.deepcopy(loaded.module).float()
            self._fp32 = (denoiser, denoiser.module, _float_cond(self.cond))
        return self._fp32


# Why ``--probe auto`` takes finite differences for networks (bench/README.md): central differences
# cost 2 forwards per direction, batched; forward-mode AD through a diffusers UNet costs 4-5 (its
# rules expand GroupNorm and attention into elementwise ops), and 4x finite differences on the small
# built-in checkpoints. Both agree to ~1e-4 in s on every supported architecture (tests/test_probes.py).
AUTO_FD_NOTE = ("auto: central finite differences in float32 (2 forwards per direction; forward-mode AD "
                "costs 2-4x more through a network); `probe` jvp gives the exact products")


def _choose_method(config: ProbingConfig, loaded: LoadedModel) -> tuple[str, str | None]:
    """``auto``: forward-mode AD for callables (analytic built-ins, user functions: exact and cheap),
    finite differences for networks (float32 copy of the weights for half-precision models)."""
    if config.probe != "auto":
        return config.probe, None
    if loaded.half_precision:
        return "fd", ("half-precision model: finite differences on a float32 copy of the weights "
                      "(forward AD in half precision is not validated)")
    if isinstance(loaded.denoiser, CallableDenoiser):
        return "jvp", None
    return "fd", AUTO_FD_NOTE
