"""``analyze``: instrumented sampling, mode-stiffness probing, curves and the critical time.

The run, step by step (steps outer, sample batches inner, so every step sees all samples):
  1. resolve the model into the one contract (loading.py; rank 0 first under a launcher, so a hub
     download happens once) and check outputs are writable;
  2. for each step: advance this process's batches (sampling.py), stream y and D(y) if asked, keep
     the Fourier coefficients of y and D(y) per sample at every bin of the low shells (structure
     factors, decided fractions and correlation lengths follow from them on any resample), and probe
     J along plane waves at the probe points on the steps the probe schedule picks (probes.py,
     schedule.py);
  3. gather the per-sample records of all processes and the final samples' coefficients; with the
     auto schedule, probe the steps that decide each marker from the kept probe points (no second
     sampling pass);
  4. turn the records into curves (estimators.py), markers and the regime's primary marker
     (detection.py) with a bootstrap over samples and probe points, and the diagnostics; build the
     JSON document (docs/design.md §5, §6, §9).
Several processes (distributed.py) split the samples and merge the records exactly: the document
equals the single-process one.
"""

from __future__ import annotations

import copy
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..sampling import clones
from . import detection, estimators
from ..probing import schedule
from ..config import AnalyzeConfig, make_config
from ..models.denoisers import CallableDenoiser, select_cond
from ..distributed import GatheredStates, Ranks, current
from ..errors import UserError, shorten
from ..frame import t_to_sigma
from ..probing.fourier import (LowBins, ProbeDirections, direction_bins, low_bins, plane_wave_directions,
                               shell_coefficients, shell_wave_numbers, spectrum)
from ..models.loading import LoadedModel, LoadOptions, load_model
from ..probing.probes import FORWARD_AD_ERRORS, mode_gains
from ..progress import REFINING, SAMPLING, Callback, ProgressEvent, ignore
from ..report.document import Result, clean, environment, header
from ..sampling.steppers import StepInfo, nonfinite_output_error, per_sample_noise
from ..sampling.states import check_samples_path, check_states_target, open_states, save_samples


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
    bins: LowBins | None = None
    trajectories: bool = True  # probe points on trajectories (else y = 0)
    probe_method: str = "none"
    probe_note: str | None = None
    schedule: dict = field(default_factory=dict)
    branch_states: dict = field(default_factory=dict)  # --clones: {step: y (n, C, H, W)} while sampling
    clones: dict | None = None  # the clones block (clones.measure)
    seconds: dict = field(default_factory=lambda: {"sampling_s": 0.0, "probing_s": 0.0})

    @classmethod
    def for_steps(cls, infos: list[StepInfo]) -> "Records":
        n = len(infos)
        return cls(list(infos), *(StepRows(n) for _ in range(3)))


@dataclass
class Curves:
    """Per-step curves (S,) or (S, K), NaN where undefined (docs/design.md §3-§5)."""

    stiffness: np.ndarray
    stiffness_sem: np.ndarray
    r: np.ndarray
    kappa: np.ndarray
    xi_eq: np.ndarray
    xi_state: np.ndarray
    xi_denoised: np.ndarray
    power_state: np.ndarray  # (S, K) connected shell power of y
    power_denoised: np.ndarray  # (S, K) of D(y)
    power_final: np.ndarray  # (K,) of the final samples x0
    decided: np.ndarray  # (S, K) decided fraction
    unstable: np.ndarray  # (S, K) instability fraction, NaN where not probed
    bins_denoised: np.ndarray  # (S, C, Q) connected power of D(y) per channel and low bin
    bins_final: np.ndarray  # (C, Q) of the final samples


def analyze(model: Any, *, shape: tuple[int, int, int] | None = None, save_samples_to: str | Path | None = None,
            save_states: str | Path | None = None, callback: Callback | None = None,
            load_options: LoadOptions | None = None, **options: Any) -> Result:
    """Analyse ``model`` (hub id, folder, ``builtin:NAME`` or callable ``denoise(y, sigma)`` with ``shape``).

    ``options`` are the fields of ``AnalyzeConfig`` (steps, samples, seed, shells, directions,
    probe_samples, probe, probe_schedule, linearize_at, ...). Returns a ``Result``; ``Result.to_dict()``
    is the JSON document of docs/design.md §9 and ``Result.samples`` the final samples (N, C, H, W).
    Under ``torchrun`` / ``accelerate launch`` every process returns the same Result and only rank 0
    writes ``save_samples_to`` and ``save_states``.
    """
    started = time.perf_counter()
    config = make_config(**options)
    ranks = current(config.device)
    if config.samples < ranks.world:
        raise UserError(f"{config.samples} samples cannot be split over {ranks.world} processes",
                        "use at least one sample per process")
    if save_samples_to is not None and ranks.is_main:
        check_samples_path(save_samples_to)
    if save_states is not None and ranks.is_main:
        check_states_target(save_states)
    with ranks.main_first():
        loaded = load_model(model, config, shape, load_options)
    loaded_at = time.perf_counter()
    directions = plane_wave_directions(loaded.shape, config.shells, config.directions)
    states = _open_states(save_states, config, loaded, ranks)
    try:
        records, samples = run(loaded, config, directions, states, callback or ignore, ranks)
    finally:
        if states is not None:
            states.close()
    if save_samples_to is not None and ranks.is_main:
        save_samples(save_samples_to, samples, {"model": loaded.info["id"], "seed": config.seed})
    analysed_at = time.perf_counter()
    document = build_document(loaded, config, directions, records)
    document["environment"]["distributed"] = ranks.describe()
    document["timing"] = {"total_s": time.perf_counter() - started, "load_s": loaded_at - started,
                          **records.seconds, "analysis_s": time.perf_counter() - analysed_at}
    return Result(clean(document), samples)


def _open_states(target: str | Path | None, config: AnalyzeConfig, loaded: LoadedModel, ranks: Ranks):
    """The --save-states writer, one entry per step record (two per scheduler step for Heun-type schedulers;
    rank 0 writes; under several ranks every rank joins the per-step gather)."""
    if target is None:
        return None
    records = len(loaded.make_stepper().infos)
    writer = open_states(target, records, config.samples, loaded.shape) if ranks.is_main else None
    return writer if ranks.world == 1 else GatheredStates(writer, ranks)


class _Batches:
    """This process's samples (global indices ``mine``) in batches, each with its own stepper.

    Sample i draws all its noise from a CPU generator seeded ``seed + i`` (docs/design.md §9), so the
    trajectories do not depend on the batch size or on how the samples are split over processes.
    """

    def __init__(self, loaded: LoadedModel, config: AnalyzeConfig, mine: range):
        self.generators = [torch.Generator("cpu").manual_seed(config.seed + i) for i in mine]
        size = config.batch_size
        self.rows = [list(range(lo, min(lo + size, len(mine)))) for lo in range(0, len(mine), size)]
        self.steppers = [loaded.make_stepper() for _ in self.rows]
        self.conds = [loaded.conditioning(len(rows)) for rows in self.rows]
        noise = per_sample_noise(loaded.shape, self.generators)
        self.xs = [stepper.init(noise[rows]) for stepper, rows in zip(self.steppers, self.rows, strict=True)]
        self.infos = self.steppers[0].infos

    def step(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Advance every batch by step i -> (y, D(y)), (n, C, H, W) float32 in the VE frame."""
        ys, ds = [], []
        with torch.no_grad():
            for k, stepper in enumerate(self.steppers):
                generators = [self.generators[j] for j in self.rows[k]]
                y, d, self.xs[k] = stepper.step(self.xs[k], i, self.conds[k], generators)
                ys.append(y)
                ds.append(d)
        return torch.cat(ys), torch.cat(ds)

    def final(self) -> torch.Tensor:
        return torch.cat([stepper.final(x).cpu() for stepper, x in zip(self.steppers, self.xs, strict=True)])


def run(loaded: LoadedModel, config: AnalyzeConfig, directions: ProbeDirections, states, callback: Callback,
        ranks: Ranks | None = None):
    """Sample this process's batches step by step, recording what the estimators need.

    -> (Records, final samples (N, C, H, W) of all processes). ``states`` has ``write(info, y, d)``
    or is None; ``ranks`` splits the samples (default: one process).
      1. per step: advance the batches, check, record the fields, stream the states, probe (or keep
         the probe points for later);
      2. gather the final samples and the per-sample records of all ranks;
      3. auto schedule: probe the steps that decide the markers, from the kept points.
    """
    ranks = ranks or Ranks()
    mine = ranks.split(config.samples)
    batches = _Batches(loaded, config, mine)
    infos = batches.infos
    records = Records.for_steps(infos)
    records.bins = low_bins(loaded.shape[1], loaded.shape[2], config.shells)
    records.trajectories = config.linearize_at == "trajectory"
    prober = Prober(loaded, config, directions, records, ranks)
    plan = _initial_plan(config, len(infos), records)
    branches = set(clones.branch_steps(len(infos), config.clones))
    keep_points = config.probe_schedule == "auto" and config.linearize_at == "trajectory"
    store = schedule.PointStore(len(infos), (config.probe_samples, *loaded.shape)) if keep_points else None
    try:
        for i, info in enumerate(infos):
            tick = time.perf_counter()
            y, d = batches.step(i)
            if ranks.any(not (torch.isfinite(y).all() and torch.isfinite(d).all())):
                raise nonfinite_output_error(info, loaded.half_precision)
            _record_fields(records, y, d)
            if states is not None:
                states.write(info, y, d)
            if i in branches:
                records.branch_states[i] = y.detach().float().cpu()
            records.seconds["sampling_s"] += time.perf_counter() - tick
            tick = time.perf_counter()
            points = _probe_points(config, loaded, y, mine, ranks)
            records.gains.append(_probe_step(prober, info, points, i in plan, store))
            records.seconds["probing_s"] += time.perf_counter() - tick
            callback(ProgressEvent(SAMPLING, i + 1, len(infos), sigma=info.sigma, t=info.t))
        samples = ranks.all_rows(batches.final())
        _merge_rows(records, ranks)
        records.coef_final = shell_coefficients(spectrum(samples), records.bins).numpy()
        if config.probe_schedule == "auto":
            tick = time.perf_counter()
            _refine(prober, records, directions, store, callback)
            records.seconds["probing_s"] += time.perf_counter() - tick
        if records.branch_states:
            tick = time.perf_counter()
            records.clones = clones.measure(loaded, config, infos, records.branch_states, mine, ranks, records.bins,
                                            callback)
            records.branch_states.clear()
            records.seconds["clones_s"] = time.perf_counter() - tick
    finally:
        if store is not None:
            store.close()
    return records, samples


def _initial_plan(config: AnalyzeConfig, n_steps: int, records: Records) -> set[int]:
    """The steps probed while sampling; the schedule's description goes into the JSON."""
    if config.probe_schedule == "every":
        records.schedule = {"mode": "every", "every": config.probe_every}
        return schedule.grid(n_steps, config.probe_every)
    stride = config.probe_every if config.probe_every > 1 else schedule.coarse_stride(n_steps, config.linearize_at)
    records.schedule = {"mode": "auto", "coarse_stride": stride, "refined_steps": []}
    return schedule.grid(n_steps, stride)


def _record_fields(records: Records, y: torch.Tensor, d: torch.Tensor) -> None:
    """Per-sample coefficients of y and D(y) at the low bins (this rank's rows; docs/design.md §4, §5):
    every ensemble observable of the low shells follows from them, on any resample of the samples."""
    for field_, coef in ((y, records.coef_state), (d, records.coef_denoised)):
        coef.append(shell_coefficients(spectrum(field_), records.bins).cpu().numpy())


def _merge_rows(records: Records, ranks: Ranks) -> None:
    """Per-sample coefficients of all ranks, in sample order (contiguous slices in rank order)."""
    if ranks.world == 1:
        return
    for name in ("coef_state", "coef_denoised"):
        parts = ranks.all_objects(np.stack(list(getattr(records, name))))  # each (S, n_r, C, 3)
        setattr(records, name, StepRows.of(np.concatenate(parts, axis=1)))


def _probe_points(config: AnalyzeConfig, loaded: LoadedModel, y: torch.Tensor, mine: range,
                  ranks: Ranks) -> torch.Tensor:
    """The probe points (P, C, H, W) float32 on every rank: global samples 0..P-1 of this step, or y = 0."""
    if config.linearize_at == "zero":
        return torch.zeros(1, *loaded.shape, device=y.device)
    local = max(0, min(mine.stop, config.probe_samples) - mine.start)
    return ranks.all_rows(y[:local].float())


def _probe_step(prober: "Prober", info: StepInfo, points: torch.Tensor, probe_now: bool,
                store: schedule.PointStore | None) -> np.ndarray | None:
    """One step's probing: keep the points for the auto schedule's refinement; gains (P, M) if probed now."""
    if store is not None:
        store.write(info.index, points)
    return prober.gains(info, points) if probe_now else None


def _refine(prober: "Prober", records: Records, directions: ProbeDirections,
            store: schedule.PointStore | None, callback: Callback) -> None:
    """Auto schedule, after sampling: probe the middles of the marker brackets until they are one step wide."""
    refined: list[int] = []
    focus = _decision_steps(records, directions, prober.config) if records.trajectories else set()
    while True:
        probed = [i for i, g in enumerate(records.gains) if g is not None]
        curves = compute_curves(records, directions)
        shell = decision_shell(curves, records.bins, prober.config.decision_shell)
        unstable = curves.unstable[:, shell] if shell is not None else None
        todo = sorted(schedule.refinement(probed, curves.stiffness[:, 0], curves.xi_eq, unstable,
                                          schedule.REFINED[prober.config.linearize_at], focus))
        if not todo:
            break
        for i in todo:
            info = records.infos[i]
            points = store.read(i).to(prober.device) if store is not None else \
                torch.zeros(1, *prober.loaded.shape, device=prober.device)
            records.gains[i] = prober.gains(info, points)
            refined.append(i)
            callback(ProgressEvent(REFINING, i + 1, len(records.infos), sigma=info.sigma, t=info.t))
    records.schedule["refined_steps"] = sorted(refined)


def _decision_steps(records: Records, directions: ProbeDirections, config: AnalyzeConfig) -> set[int]:
    """The two steps around the ``decision`` marker (none when it is absent): known from the records alone."""
    curves = compute_curves(records, directions)
    shell = decision_shell(curves, records.bins, config.decision_shell)
    t = np.array([info.t for info in records.infos])
    value = markers_of(curves, t, consistent_steps(curves, records.coef_final.shape[0]), shell)[detection.DECISION]
    if value is None:
        return set()
    before = int(np.flatnonzero(t >= value)[-1])  # t falls along generation
    return {before, min(before + 1, len(t) - 1)}


def _float_cond(cond: dict | None) -> dict | None:
    """Floating-point conditioning tensors in float32 (for the float32 probing copy of a half model)."""
    if cond is None:
        return None
    return {k: _float_cond(v) if isinstance(v, dict) else (v.float() if torch.is_floating_point(v) else v)
            for k, v in cond.items()}


class Prober:
    """Mode gains at one step's probe points; the directions are split over the ranks (docs/design.md §3).

    The method is chosen at the first probe (``auto``: finite differences for networks; JVP for
    callables, falling back to finite differences where forward AD fails; the same on every rank).
    Finite differences of a half-precision model run on a float32 copy of its weights:
    half-precision round-off (~1e-3) would swamp a difference of relative step 5e-3; the copy is
    made once, at the first probe.
    """

    def __init__(self, loaded: LoadedModel, config: AnalyzeConfig, directions: ProbeDirections, records: Records,
                 ranks: Ranks):
        self.loaded, self.config, self.records, self.ranks = loaded, config, records, ranks
        mine = ranks.split(directions.count)
        self.vectors = directions.vectors[mine.start:mine.stop]
        self.cond = loaded.conditioning(config.probe_samples)
        self.device = loaded.device
        self._fp32: tuple[Any, torch.nn.Module | None, dict | None] | None = None

    def gains(self, info: StepInfo, points: torch.Tensor) -> np.ndarray:
        """(P, M) gains <v_m, J(y_p) v_m> at this step's sigma, gathered over the ranks in direction order."""
        records = self.records
        if records.probe_method == "none":
            records.probe_method, records.probe_note = _choose_method(self.config, self.loaded)
            if records.probe_method == "jvp" and self.config.probe == "auto":
                error = None
                try:
                    local = self._local(info, points, "jvp")
                except FORWARD_AD_ERRORS as err:
                    error = err
                if not self.ranks.any(error is not None):
                    return self._gather(local)
                records.probe_method = "fd"
                reason = f"{type(error).__name__}: {shorten(str(error), 120)}" if error else "on another rank"
                records.probe_note = f"forward AD failed ({reason}); used finite differences"
        try:
            return self._gather(self._local(info, points, records.probe_method))
        except FORWARD_AD_ERRORS as err:
            if records.probe_method != "jvp":
                raise
            raise UserError(f"forward-mode AD (--probe jvp) fails through this model: {type(err).__name__}: "
                            f"{shorten(str(err), 160)}", "use --probe fd (or auto)") from None

    def _gather(self, local: np.ndarray) -> np.ndarray:
        if self.ranks.world == 1:
            return local
        return self.ranks.all_rows(torch.from_numpy(local.T.copy())).numpy().T.copy()

    def _local(self, info: StepInfo, points: torch.Tensor, method: str) -> np.ndarray:
        denoiser, module, cond = self._model_for(method)
        timestep = info.timestep

        def denoise_at(z: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
            sigma = torch.full((z.shape[0],), info.sigma, device=z.device)
            ts = None if timestep is None else torch.full((z.shape[0],), timestep, device=z.device)
            return denoiser(z, sigma, ts, select_cond(cond, rows))

        return mode_gains(denoise_at, points, self.vectors, method, self.config.fd_step, info.sigma,
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
                "costs 2-4x more through a network); --probe jvp gives the exact products")


def _choose_method(config: AnalyzeConfig, loaded: LoadedModel) -> tuple[str, str | None]:
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


def compute_curves(records: Records, directions: ProbeDirections, probe_rows: np.ndarray | None = None,
                   sample_rows: np.ndarray | None = None) -> Curves:
    """Curves from the records, optionally on a resample of the probe points and of the samples."""
    n_steps, k = len(records.infos), directions.n_shells
    sigma = np.array([info.sigma for info in records.infos])
    stiffness, sem, unstable = (np.full((n_steps, k), np.nan) for _ in range(3))
    probed = [i for i, g in enumerate(records.gains) if g is not None]
    shell = directions.shell.numpy()
    if probed:
        gains = np.stack([records.gains[i] for i in probed])  # (S', P, M)
        if probe_rows is not None:
            gains = gains[:, probe_rows]
        stiffness[probed], sem[probed] = estimators.shell_stiffness(gains, shell, k)
        if records.trajectories:  # a share of trajectories; at y = 0 there is one point and no share
            unstable[probed] = estimators.unstable_fraction(estimators.point_stiffness(gains, shell, k))
    k2 = np.array([float(directions.k2[directions.shell == n].mean()) for n in range(k)])
    r, kappa, xi_eq = np.full(n_steps, np.nan), np.full(n_steps, np.nan), np.full(n_steps, np.nan)
    if probed:
        r[probed], kappa[probed], xi_eq[probed] = estimators.ginzburg_landau_fit(stiffness[probed], k2, sigma[probed])
    coef_state, coef_denoised = np.stack(list(records.coef_state)), np.stack(list(records.coef_denoised))
    coef_final = records.coef_final
    if sample_rows is not None:
        coef_state, coef_denoised = coef_state[:, sample_rows], coef_denoised[:, sample_rows]
        coef_final = coef_final[sample_rows]
    bin_shell, bin_k2 = records.bins.shell.numpy(), records.bins.k2.numpy()
    bins_state, bins_denoised, bins_final = (estimators.bin_power(c) for c in (coef_state, coef_denoised, coef_final))
    power_state, power_denoised, power_final = (estimators.shell_power(p, bin_shell, k)
                                                for p in (bins_state, bins_denoised, bins_final))
    return Curves(stiffness, sem, r, kappa, xi_eq,
                  estimators.correlation_length(bins_state, bin_k2),
                  estimators.correlation_length(bins_denoised, bin_k2),
                  power_state, power_denoised, power_final,
                  estimators.decided_fraction(power_denoised, power_final), unstable,
                  bins_denoised, bins_final)


# A step whose decided fraction exceeds this on a shell whose samples vary has an x0 estimate D(y)
# that varies more across samples than the samples themselves (law of total variance broken,
# docs/design.md §5): the model's denoiser is unreliable there and the step is kept out of the markers.
CONSISTENT_BELOW = 1.25
# Below this many samples a variance ratio has a relative error of 50% or more (sqrt(2 / N)): no
# step is judged inconsistent.
CONSISTENCY_MIN_SAMPLES = 8


def consistent_steps(curves: Curves, n_samples: int) -> np.ndarray:
    """(S,) bool: steps whose decided fraction is at most CONSISTENT_BELOW on every varying shell."""
    if n_samples < CONSISTENCY_MIN_SAMPLES:
        return np.ones(len(curves.decided), dtype=bool)
    varies = estimators.varying_shells(curves.power_final)
    decided = np.nan_to_num(curves.decided[:, varies], nan=0.0)
    return (decided <= CONSISTENT_BELOW).all(1)


# The decision shell must hold at least this many FFT bins per channel when a varying shell does:
# the DC shell holds one, so its decided fraction rests on one degree of freedom per sample and its
# crossing moved 3x more between disjoint reseeds of builtin:textures than shell 1's (8 bins).
DECISION_MIN_BINS = 4


def decision_shell(curves: Curves, bins: LowBins, requested: int | None = None) -> int | None:
    """The shell of ``decision`` and ``instability_onset`` (docs/design.md §6): ``requested`` if given
    (None when its samples do not vary), else the lowest varying shell with at least DECISION_MIN_BINS
    bins, else the lowest varying shell (the two-point mixture varies in its DC shell only)."""
    varies = estimators.varying_shells(curves.power_final)
    if requested is not None:
        return requested if requested < len(varies) and varies[requested] else None
    counts = np.bincount(bins.shell.numpy(), minlength=len(varies))
    wide = np.flatnonzero(varies & (counts >= DECISION_MIN_BINS))
    narrow = np.flatnonzero(varies)
    return int(wide[0]) if wide.size else (int(narrow[0]) if narrow.size else None)


def _detected_curves(curves: Curves, keep: np.ndarray, shell: int | None) -> dict[str, np.ndarray | None]:
    """The curves detection reads, on the steps in ``keep`` (the others NaN); decided and unstable at ``shell``."""
    mask = lambda v: _on_steps(v, keep)  # noqa: E731
    pick = lambda v: None if shell is None else mask(v)[:, shell]  # noqa: E731
    return {"s_low": mask(curves.stiffness)[:, 0], "xi_eq": mask(curves.xi_eq), "xi_denoised": mask(curves.xi_denoised),
            "decided": pick(curves.decided), "unstable": pick(curves.unstable)}


def markers_of(curves: Curves, t: np.ndarray, keep: np.ndarray, shell: int | None) -> dict[str, float | None]:
    """Every marker on the steps in ``keep`` (the others are NaN for detection)."""
    return detection.find_markers(t, **_detected_curves(curves, keep, shell))


def once_per_t(t: np.ndarray) -> np.ndarray:
    """(S,) bool: False on a step whose t the next step repeats. Heun-type schedulers take the second
    evaluation of a step and the first of the next at one sigma; markers read each t once, from the later."""
    return np.append(t[:-1] != t[1:], True)


def _on_steps(values: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """A per-step curve (S, ...) with NaN on the steps not in ``keep`` (S,)."""
    return np.where(keep.reshape(-1, *([1] * (values.ndim - 1))), values, np.nan)


def _widen(ci95: list[float] | None, bracket: tuple[float, float]) -> list[float]:
    low, high = min(bracket), max(bracket)
    return [low, high] if ci95 is None else [min(ci95[0], low), max(ci95[1], high)]


def bootstrap_curves(records: Records, directions: ProbeDirections, repeats: int, seed: int):
    """``repeats`` resamples (with replacement) of the samples and of the probe points -> list of Curves."""
    rng = np.random.default_rng(seed)
    n_points = next((g.shape[0] for g in records.gains if g is not None), 0)
    n_samples = records.coef_state[0].shape[0]
    out = []
    for _ in range(repeats):
        probe_rows = rng.integers(0, n_points, n_points) if n_points > 1 else None
        sample_rows = rng.integers(0, n_samples, n_samples)
        out.append(compute_curves(records, directions, probe_rows, sample_rows))
    return out


def critical_block(records: Records, config: AnalyzeConfig, curves: Curves, resamples: list[Curves],
                   keep: np.ndarray) -> dict:
    """docs/design.md §6: every marker with its own bootstrap ci95, presence and modes; critical.t is the
    regime's primary marker (``detection.PRIMARY``), never a median of markers. ``keep``: the consistent steps."""
    t = np.array([info.t for info in records.infos])
    keep = keep & once_per_t(t)
    shell = decision_shell(curves, records.bins, config.decision_shell)
    markers = markers_of(curves, t, keep, shell)
    draws = [markers_of(c, t, keep, shell) for c in resamples]
    detected = _detected_curves(curves, keep, shell)
    # a probe-based marker is known to lie between two probed steps: its interval holds that bracket too
    brackets = detection.find_brackets(t, detected["s_low"], detected["xi_eq"], detected["unstable"], markers)
    blocks: dict[str, dict | None] = {}
    for name, value in markers.items():
        summary = detection.summarize_bootstrap([d[name] for d in draws]) if draws else \
            {"presence": None, "ci95": None, "modes": None}
        if name in brackets:
            summary["ci95"] = _widen(summary.get("ci95"), brackets[name])
        blocks[name] = None if value is None else {**_locate(value, records.infos, t), **summary}
    primary = detection.PRIMARY[config.linearize_at]
    chosen = blocks[primary]
    located = chosen if chosen is not None else {**_locate(None, records.infos, t), "ci95": None, "presence": None}
    return {"found": chosen is not None, **{key: located.get(key) for key in
                                            ("t", "sigma", "step", "timestep", "fraction", "ci95", "presence")},
            "modes": located.get("modes"), "primary": primary, "regime": config.linearize_at,
            "decision_shell": shell, "markers": blocks,
            "bootstrap": {"repeats": len(resamples), "over": "samples and probe points"}}


def _locate(t_value: float | None, infos: list[StepInfo], t: np.ndarray) -> dict:
    if t_value is None:
        return {"t": None, "sigma": None, "step": None, "timestep": None, "fraction": None}
    step, fraction = detection.locate(t_value, t)
    return {"t": t_value, "sigma": t_to_sigma(t_value), "step": infos[step].index,
            "timestep": infos[step].timestep, "fraction": fraction}


def _band(resamples: list[Curves], name: str) -> np.ndarray | None:
    """(S, K, 2) percentile ci95 of a curve over the bootstrap resamples (NaN where undefined)."""
    if not resamples:
        return None
    stack = np.stack([getattr(c, name) for c in resamples])
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.moveaxis(np.nanpercentile(stack, [2.5, 97.5], axis=0), 0, -1)


def diagnostics_block(records: Records, directions: ProbeDirections, curves: Curves, keep: np.ndarray,
                      side: int) -> dict:
    """Total-variance consistency (``keep``: the consistent steps), the Tweedie check of the probed gains, and
    undefined or too long xi (docs/design.md §4, §5)."""
    sigma = np.array([info.sigma for info in records.infos])
    varies = estimators.varying_shells(curves.power_final)
    # Expected gain of each probed direction (its channel and bin), averaged over the shell's directions.
    where = direction_bins(directions, records.bins)
    per_direction = estimators.tweedie_gain(curves.bins_denoised[:, where[0], where[1]],
                                            curves.bins_final[where[0], where[1]], sigma)  # (S, M)
    shell = directions.shell.numpy()
    expected = np.stack([per_direction[:, shell == n].mean(1) for n in range(directions.n_shells)], 1)
    measured = 1.0 - curves.stiffness
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(np.isfinite(measured) & (expected > TWEEDIE_MIN_GAIN) & varies, measured / expected, np.nan)
    if not records.trajectories:  # gains at y = 0 are not an average over y
        ratio[:] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        median_ratio = np.nanmedian(ratio, axis=0)
        max_decided = np.nanmax(np.where(varies, curves.decided, np.nan), axis=0)
    return {
        "total_variance": {
            "limit": CONSISTENT_BELOW, "max_decided": max_decided.tolist(), "varying_shells": varies.tolist(),
            "inconsistent_steps": [records.infos[i].index for i in np.flatnonzero(~keep)],
            "min_samples": CONSISTENCY_MIN_SAMPLES,
            "rule": "decided fraction Var D(y) / Var x0 <= limit on every varying shell (judged from min_samples "
                    "samples on); steps above are left out of the markers",
        },
        "tweedie": {
            "median_ratio": median_ratio.tolist(), "min_expected_gain": TWEEDIE_MIN_GAIN,
            "rule": "measured mean gain / (Var <v,x0> - Var <v,D>) / sigma^2 over probed steps "
                    "(1 for an exact denoiser)",
        },
        "xi": {
            "undefined_steps_denoised": int(np.isnan(curves.xi_denoised).sum()),
            "beyond_half_box_steps": [records.infos[i].index for i in np.flatnonzero(
                np.nan_to_num(np.maximum(curves.xi_state, curves.xi_denoised), nan=0.0) > side / 2)],
        },
    }


# The Tweedie ratio is formed only where the expected gain is resolved.
def _clones_block(block: dict | None, curves: Curves) -> dict | None:
    """The clones' correlation beside the decided fraction at the same steps (None without --clones)."""
    if block is None:
        return None
    return {**block, "decided": [curves.decided[s].tolist() for s in block["branch_steps"]]}


TWEEDIE_MIN_GAIN = 0.05


def _theory_block(loaded: LoadedModel, config: AnalyzeConfig, directions: ProbeDirections, records: Records,
                  curves: Curves, critical: dict) -> dict | None:
    if loaded.theory is None:
        return None
    theory = loaded.theory([info.sigma for info in records.infos], directions)
    predicted = np.array(theory["stiffness"], dtype=float)
    comparable = theory.get("exact_everywhere") or config.linearize_at == "zero"
    diff = {}
    if comparable and np.isfinite(curves.stiffness).any():
        # |s| reaches 1/sigma^2 at small sigma: compare relative to max(1, |s_predicted|).
        error = np.abs(curves.stiffness - predicted) / np.maximum(1.0, np.abs(predicted))
        diff["stiffness_max_rel"] = float(np.nanmax(error))
    # each marker against its own exact value (a marker's meaning fixes its theory: docs/design.md §7)
    by_shell, shell = theory.pop("decision_by_shell", None), critical.get("decision_shell")
    if by_shell is not None and shell is not None and by_shell[shell] is not None:
        theory.setdefault("markers", {})["decision"] = by_shell[shell]
    for name, exact in (theory.get("markers") or {}).items():
        marker = critical["markers"].get(name)
        if marker is not None:
            diff[f"{name}_t"] = marker["t"] - exact
            diff[f"{name}_t_relative"] = diff[f"{name}_t"] / exact
    exact_primary = (theory.get("markers") or {}).get(critical["primary"])
    if exact_primary is not None and critical["t"] is not None:
        diff["critical_t"] = critical["t"] - exact_primary
    theory["valid_for_this_run"] = bool(comparable)
    theory["measured_minus_predicted"] = diff
    return theory


def build_document(loaded: LoadedModel, config: AnalyzeConfig, directions: ProbeDirections, records: Records) -> dict:
    side = loaded.shape[-1]
    curves = compute_curves(records, directions)
    resamples = bootstrap_curves(records, directions, config.bootstrap, config.seed)
    consistent = consistent_steps(curves, records.coef_final.shape[0])
    critical = critical_block(records, config, curves, resamples, consistent)
    decided_band, unstable_band = _band(resamples, "decided"), _band(resamples, "unstable")
    sigma = np.array([info.sigma for info in records.infos])
    gaussian = estimators.gaussian_stiffness(curves.power_final, sigma)
    shell = directions.shell.numpy()
    steps = []
    for i, info in enumerate(records.infos):
        gains = records.gains[i]
        probed = gains is not None
        steps.append({
            "index": info.index, "timestep": info.timestep, "sigma": info.sigma, "t": info.t,
            "xi_state": curves.xi_state[i], "xi_denoised": curves.xi_denoised[i],
            "stiffness": curves.stiffness[i].tolist() if probed else None,
            "stiffness_sem": curves.stiffness_sem[i].tolist() if probed else None,
            "r": curves.r[i], "kappa": curves.kappa[i], "xi_eq": curves.xi_eq[i], "probed": probed,
            "structure_state": curves.power_state[i].tolist(),
            "structure_denoised": curves.power_denoised[i].tolist(),
            "decided": curves.decided[i].tolist(),
            "decided_ci95": None if decided_band is None else decided_band[i].tolist(),
            "gaussian_stiffness": gaussian[i].tolist(),
            "unstable_fraction": curves.unstable[i].tolist() if probed else None,
            "unstable_fraction_ci95": unstable_band[i].tolist() if probed and unstable_band is not None else None,
            "point_stiffness": (estimators.point_stiffness(gains, shell, directions.n_shells).tolist()
                                if probed else None),
            "x0_consistent": bool(consistent[i]),
            **({"evaluation": info.evaluation} if info.evaluation is not None else {}),
        })
    document = {
        **header("analyze", config.to_dict(), model=loaded.info,
                 environment=environment(loaded.device, records.probe_method, config.dtype, records.probe_note)),
        "shells": shell_wave_numbers(loaded.shape[1], loaded.shape[2], config.shells),
        "probe": {"method": records.probe_method, "linearize_at": config.linearize_at,
                  "probe_points": 1 if config.linearize_at == "zero" else config.probe_samples,
                  "fd_step": config.fd_step if records.probe_method == "fd" else None,
                  "probed_steps": sum(g is not None for g in records.gains),
                  "schedule": records.schedule,
                  **directions.describe()},
        "final_power": curves.power_final.tolist(),
        "steps": steps,
        "critical": critical,
        "clones": _clones_block(records.clones, curves),
        "diagnostics": diagnostics_block(records, directions, curves, consistent, side),
    }
    theory = _theory_block(loaded, config, directions, records, curves, critical)
    if theory is not None:
        document["theory"] = theory
    return document
