"""``analyze``: instrumented sampling, mode-stiffness probing, curves and the critical time.

The run, step by step (steps outer, sample batches inner, so every step sees all samples):
  1. resolve the model into the one contract (loading.py; rank 0 first under a launcher, so a hub
     download happens once) and check outputs are writable;
  2. for each step: advance this process's batches (sampling.py), stream y and D(y) if asked, keep
     the low Fourier modes of y and D(y) per sample and the shell structure factors (sums over
     samples merged across processes before the radial average), and probe J along plane waves at
     the probe points on the steps the probe schedule picks (probes.py, schedule.py);
  3. gather the per-sample records of all processes; with the auto schedule, probe the steps that
     decide each marker from the kept probe points (no second sampling pass);
  4. turn the records into curves (estimators.py), markers and consensus (detection.py), and a
     bootstrap interval over samples; build the JSON document (report.py).
Several processes (distributed.py) split the samples and merge the records exactly: the document
equals the single-process one.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import detection, estimators, schedule
from .config import AnalyzeConfig, make_config
from .denoisers import CallableDenoiser, select_cond
from .distributed import GatheredStates, Ranks, current
from .errors import UserError
from .frame import t_to_sigma
from .fourier import (ProbeDirections, fourier_sums, low_mode_coefficients, plane_wave_directions, shell_map,
                      shell_wave_numbers, spectrum)
from .io import check_writable
from .loading import LoadedModel, LoadOptions, load_model
from .probes import FORWARD_AD_ERRORS, mode_gains
from .progress import REFINING, SAMPLING, Callback, ProgressEvent, ignore
from .report import SCHEMA_VERSION, TIME_CONVENTION, Result, clean, environment, now_iso
from .sampling import StepInfo, nonfinite_output_error, per_sample_noise
from .states import open_states, save_samples


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
    coef_state: StepRows = field(default_factory=StepRows)  # (N, C, 3) complex (this rank's rows while sampling)
    coef_denoised: StepRows = field(default_factory=StepRows)
    structure_state: StepRows = field(default_factory=StepRows)  # (K,), over all N samples
    structure_denoised: StepRows = field(default_factory=StepRows)
    probe_method: str = "none"
    probe_note: str | None = None
    schedule: dict = field(default_factory=dict)
    seconds: dict = field(default_factory=lambda: {"sampling_s": 0.0, "probing_s": 0.0})

    @classmethod
    def for_steps(cls, infos: list[StepInfo]) -> "Records":
        n = len(infos)
        return cls(list(infos), *(StepRows(n) for _ in range(5)))


@dataclass
class Curves:
    """Per-step curves (S,) or (S, K), NaN where undefined."""

    stiffness: np.ndarray
    stiffness_sem: np.ndarray
    r: np.ndarray
    kappa: np.ndarray
    xi_eq: np.ndarray
    xi_state: np.ndarray
    xi_denoised: np.ndarray


def analyze(model: Any, *, shape: tuple[int, int, int] | None = None, save_samples_to: str | Path | None = None,
            save_states: str | Path | None = None, callback: Callback | None = None,
            load_options: LoadOptions | None = None, **options: Any) -> Result:
    """Analyse ``model`` (hub id, folder, ``builtin:NAME`` or callable ``denoise(y, sigma)`` with ``shape``).

    ``options`` are the fields of ``AnalyzeConfig`` (steps, samples, seed, shells, directions,
    probe_samples, probe, probe_schedule, linearize_at, ...). Returns a ``Result``; ``Result.to_dict()``
    is the JSON document of DESIGN.md §7 and ``Result.samples`` the final samples (N, C, H, W).
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
        check_writable(save_samples_to, "--save-samples file")
    with ranks.main_first():
        loaded = load_model(model, config, shape, load_options)
    loaded_at = time.perf_counter()
    directions = plane_wave_directions(loaded.shape, config.shells, config.directions)
    states = _open_states(save_states, config, loaded.shape, ranks)
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


def _open_states(target: str | Path | None, config: AnalyzeConfig, shape: tuple[int, int, int], ranks: Ranks):
    """The --save-states writer (rank 0 writes; under several ranks every rank joins the per-step gather)."""
    if target is None:
        return None
    writer = open_states(target, config.steps, config.samples, shape) if ranks.is_main else None
    return writer if ranks.world == 1 else GatheredStates(writer, ranks)


class _Batches:
    """This process's samples (global indices ``mine``) in batches, each with its own stepper.

    Sample i draws all its noise from a CPU generator seeded ``seed + i`` (DESIGN.md §7), so the
    trajectories do not depend on the batch size or on how the samples are split over processes.
    """

    def __init__(self, loaded: LoadedModel, config: AnalyzeConfig, mine: range):
        self.generators = [torch.Generator("cpu").manual_seed(config.seed + i) for i in mine]
        size = config.batch_size
        self.rows = [list(range(lo, min(lo + size, len(mine)))) for lo in range(0, len(mine), size)]
        self.steppers = [loaded.make_stepper() for _ in self.rows]
        self.conds = [loaded.conditioning(len(rows)) for rows in self.rows]
        noise = per_sample_noise(loaded.shape, self.generators)
        self.xs = [stepper.init(noise[rows]) for stepper, rows in zip(self.steppers, self.rows)]
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
        return torch.cat([stepper.final(x).cpu() for stepper, x in zip(self.steppers, self.xs)])


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
    shells = shell_map(*loaded.shape[1:]).numpy()
    records = Records.for_steps(infos)
    prober = Prober(loaded, config, directions, records, ranks)
    plan = _initial_plan(config, len(infos), records)
    keep_points = config.probe_schedule == "auto" and config.linearize_at == "trajectory"
    store = schedule.PointStore(len(infos), (config.probe_samples, *loaded.shape)) if keep_points else None
    try:
        for i, info in enumerate(infos):
            tick = time.perf_counter()
            y, d = batches.step(i)
            if ranks.any(not (torch.isfinite(y).all() and torch.isfinite(d).all())):
                raise nonfinite_output_error(info, loaded.half_precision)
            _record_fields(records, y, d, shells, config.shells, ranks, config.samples)
            if states is not None:
                states.write(info, y, d)
            records.seconds["sampling_s"] += time.perf_counter() - tick
            tick = time.perf_counter()
            points = _probe_points(config, loaded, y, mine, ranks)
            records.gains.append(_probe_step(prober, info, points, i in plan, store))
            records.seconds["probing_s"] += time.perf_counter() - tick
            callback(ProgressEvent(SAMPLING, i + 1, len(infos), sigma=info.sigma, t=info.t))
        samples = ranks.all_rows(batches.final())
        _merge_rows(records, ranks)
        if config.probe_schedule == "auto":
            tick = time.perf_counter()
            _refine(prober, records, directions, loaded.shape[-1], store, callback)
            records.seconds["probing_s"] += time.perf_counter() - tick
    finally:
        if store is not None:
            store.close()
    return records, samples


def _initial_plan(config: AnalyzeConfig, n_steps: int, records: Records) -> set[int]:
    """The steps probed while sampling; the schedule's description goes into the JSON."""
    if config.probe_schedule == "every":
        records.schedule = {"mode": "every", "every": config.probe_every}
        return schedule.grid(n_steps, config.probe_every)
    stride = config.probe_every if config.probe_every > 1 else schedule.coarse_stride(n_steps)
    records.schedule = {"mode": "auto", "coarse_stride": stride, "refined_steps": []}
    return schedule.grid(n_steps, stride)


def _record_fields(records: Records, y: torch.Tensor, d: torch.Tensor, shells: np.ndarray, n_shells: int,
                   ranks: Ranks, count: int) -> None:
    """Per-sample low modes (this rank's rows) and radial structure factors over all ``count`` samples (DESIGN.md §4).

    S(k) is not linear in the sums of F and |F|^2, so the sums are merged over the ranks first.
    """
    for field_, coef, structure in ((y, records.coef_state, records.structure_state),
                                    (d, records.coef_denoised, records.structure_denoised)):
        f = spectrum(field_)  # once per field and step
        coef.append(low_mode_coefficients(f).cpu().numpy())
        sum_f, sum_f2 = (ranks.all_sum(s) for s in fourier_sums(f))
        s = estimators.connected_structure_factor(sum_f.cpu().numpy(), sum_f2.cpu().numpy(), count)
        structure.append(estimators.radial_average(s, shells, n_shells))


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


def _refine(prober: "Prober", records: Records, directions: ProbeDirections, side: int,
            store: schedule.PointStore | None, callback: Callback) -> None:
    """Auto schedule, after sampling: probe the middles of the marker brackets until they are one step wide."""
    refined: list[int] = []
    while True:
        probed = [i for i, g in enumerate(records.gains) if g is not None]
        curves = compute_curves(records, directions, side)
        todo = sorted(schedule.refinement(probed, curves.stiffness[:, 0], curves.xi_eq))
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


def _float_cond(cond: dict | None) -> dict | None:
    """Floating-point conditioning tensors in float32 (for the float32 probing copy of a half model)."""
    if cond is None:
        return None
    return {k: _float_cond(v) if isinstance(v, dict) else (v.float() if torch.is_floating_point(v) else v)
            for k, v in cond.items()}


class Prober:
    """Mode gains at one step's probe points; the directions are split over the ranks (DESIGN.md §3).

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
                reason = f"{type(error).__name__}: {str(error).splitlines()[0][:120]}" if error else "on another rank"
                records.probe_note = f"forward AD failed ({reason}); used finite differences"
        try:
            return self._gather(self._local(info, points, records.probe_method))
        except FORWARD_AD_ERRORS as err:
            if records.probe_method != "jvp":
                raise
            raise UserError(f"forward-mode AD (--probe jvp) fails through this model: {type(err).__name__}: "
                            f"{str(err).splitlines()[0][:160]}", "use --probe fd (or auto)") from None

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
        """(denoiser, module, conditioning) to probe with: the model itself, or its float32 copy for FD in half precision."""
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


def compute_curves(records: Records, directions: ProbeDirections, side: int, probe_rows: np.ndarray | None = None,
                   sample_rows: np.ndarray | None = None) -> Curves:
    """Curves from the records, optionally on a resample of the probe points and of the samples."""
    n_steps, k = len(records.infos), directions.n_shells
    sigma = np.array([info.sigma for info in records.infos])
    stiffness = np.full((n_steps, k), np.nan)
    sem = np.full((n_steps, k), np.nan)
    probed = [i for i, g in enumerate(records.gains) if g is not None]
    if probed:
        gains = np.stack([records.gains[i] for i in probed])  # (S', P, M)
        if probe_rows is not None:
            gains = gains[:, probe_rows]
        stiffness[probed], sem[probed] = estimators.shell_stiffness(gains, directions.shell.numpy(), k)
    k2 = np.array([float(directions.k2[directions.shell == n].mean()) for n in range(k)])
    r, kappa, xi_eq = np.full(n_steps, np.nan), np.full(n_steps, np.nan), np.full(n_steps, np.nan)
    if probed:
        r[probed], kappa[probed], xi_eq[probed] = estimators.ginzburg_landau_fit(stiffness[probed], k2, sigma[probed])
    coef_state, coef_denoised = np.stack(list(records.coef_state)), np.stack(list(records.coef_denoised))
    if sample_rows is not None:
        coef_state, coef_denoised = coef_state[:, sample_rows], coef_denoised[:, sample_rows]
    return Curves(stiffness, sem, r, kappa, xi_eq, estimators.correlation_length(coef_state, side),
                  estimators.correlation_length(coef_denoised, side))


def markers_of(curves: Curves, t: np.ndarray) -> dict[str, float | None]:
    return detection.find_markers(t, curves.stiffness[:, 0], curves.xi_eq, curves.xi_denoised)


def critical_block(records: Records, directions: ProbeDirections, side: int, config: AnalyzeConfig, curves: Curves) -> dict:
    """DESIGN.md §5: markers, their median, and a bootstrap ci95 over samples."""
    t = np.array([info.t for info in records.infos])
    markers = markers_of(curves, t)
    t_c = detection.consensus(markers)
    n_points = next((g.shape[0] for g in records.gains if g is not None), 0)
    n_samples = records.coef_state[0].shape[0]

    def resampled(rng: np.random.Generator) -> float | None:
        probe_rows = rng.integers(0, n_points, n_points) if n_points > 1 else None
        sample_rows = rng.integers(0, n_samples, n_samples)
        return detection.consensus(markers_of(compute_curves(records, directions, side, probe_rows, sample_rows), t))

    ci95 = detection.bootstrap_interval(resampled, config.bootstrap, config.seed) if t_c is not None and config.bootstrap else None
    return {"found": t_c is not None, **_locate(t_c, records.infos, t), "ci95": list(ci95) if ci95 else None,
            "markers": {name: (None if v is None else _locate(v, records.infos, t)) for name, v in markers.items()},
            "consensus": "median of the markers present", "lowest_shell": 0,
            "bootstrap": {"repeats": config.bootstrap, "over": "samples and probe points"}}


def _locate(t_value: float | None, infos: list[StepInfo], t: np.ndarray) -> dict:
    if t_value is None:
        return {"t": None, "sigma": None, "step": None, "timestep": None, "fraction": None}
    step, fraction = detection.locate(t_value, t)
    return {"t": t_value, "sigma": t_to_sigma(t_value), "step": infos[step].index,
            "timestep": infos[step].timestep, "fraction": fraction}


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
    marker = critical["markers"].get(detection.STIFFNESS_ZERO)
    if theory.get("critical_t") is not None:
        if marker is not None:
            diff["stiffness_zero_t"] = marker["t"] - theory["critical_t"]
            diff["stiffness_zero_t_relative"] = diff["stiffness_zero_t"] / theory["critical_t"]
        if critical["t"] is not None:
            diff["critical_t"] = critical["t"] - theory["critical_t"]
    theory["valid_for_this_run"] = bool(comparable)
    theory["measured_minus_predicted"] = diff
    return theory


def build_document(loaded: LoadedModel, config: AnalyzeConfig, directions: ProbeDirections, records: Records) -> dict:
    from . import __version__

    side = loaded.shape[-1]
    curves = compute_curves(records, directions, side)
    critical = critical_block(records, directions, side, config, curves)
    steps = []
    for i, info in enumerate(records.infos):
        probed = records.gains[i] is not None
        steps.append({
            "index": info.index, "timestep": info.timestep, "sigma": info.sigma, "t": info.t,
            "xi_state": curves.xi_state[i], "xi_denoised": curves.xi_denoised[i],
            "stiffness": curves.stiffness[i].tolist() if probed else None,
            "stiffness_sem": curves.stiffness_sem[i].tolist() if probed else None,
            "r": curves.r[i], "kappa": curves.kappa[i], "xi_eq": curves.xi_eq[i], "probed": probed,
            "structure_state": records.structure_state[i].tolist(),
            "structure_denoised": records.structure_denoised[i].tolist(),
        })
    document = {
        "schema_version": SCHEMA_VERSION, "kind": "analyze", "diffcrit_version": __version__, "created": now_iso(),
        "model": loaded.info, "config": config.to_dict(),
        "environment": environment(loaded.device, records.probe_method, config.dtype, records.probe_note),
        "time_convention": TIME_CONVENTION,
        "shells": shell_wave_numbers(loaded.shape[1], loaded.shape[2], config.shells),
        "probe": {"method": records.probe_method, "linearize_at": config.linearize_at,
                  "probe_points": 1 if config.linearize_at == "zero" else config.probe_samples,
                  "fd_step": config.fd_step if records.probe_method == "fd" else None,
                  "probed_steps": sum(g is not None for g in records.gains),
                  "schedule": records.schedule,
                  **directions.describe()},
        "steps": steps,
        "critical": critical,
    }
    theory = _theory_block(loaded, config, directions, records, curves, critical)
    if theory is not None:
        document["theory"] = theory
    return document
