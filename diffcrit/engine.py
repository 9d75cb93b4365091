"""``analyze``: instrumented sampling, mode-stiffness probing, curves and the critical time.

The run, step by step (steps outer, sample batches inner, so every step sees all samples):
  1. resolve the model into the one contract (loading.py) and check outputs are writable;
  2. for each step: advance every batch (sampling.py), stream y and D(y) if asked, keep the
     low Fourier modes of y and D(y) per sample and the shell structure factors, and probe
     J along plane waves at the probe points (probes.py);
  3. turn the records into curves (estimators.py), markers and consensus (detection.py), and a
     bootstrap interval over samples; build the JSON document (report.py).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from . import detection, estimators
from .config import AnalyzeConfig, make_config
from .denoisers import select_cond
from .errors import ModelOutputError, UserError
from .fourier import ProbeDirections, fourier_sums, low_mode_coefficients, plane_wave_directions, shell_map, shell_wave_numbers
from .io import check_writable
from .loading import LoadedModel, LoadOptions, load_model
from .probes import FORWARD_AD_ERRORS, mode_gains
from .report import SCHEMA_VERSION, TIME_CONVENTION, Result, clean, environment, now_iso
from .sampling import StepInfo, per_sample_noise
from .states import open_states, save_samples

Callback = Callable[[dict], None]


@dataclass
class Records:
    """Everything measured along the run, per step (S steps, N samples, P probe points, M directions)."""

    infos: list[StepInfo] = field(default_factory=list)
    gains: list[np.ndarray | None] = field(default_factory=list)  # (P, M) or None when not probed
    coef_state: list[np.ndarray] = field(default_factory=list)  # (N, C, 3) complex
    coef_denoised: list[np.ndarray] = field(default_factory=list)
    structure_state: list[np.ndarray] = field(default_factory=list)  # (K,)
    structure_denoised: list[np.ndarray] = field(default_factory=list)
    probe_method: str = "none"
    probe_note: str | None = None
    seconds: dict = field(default_factory=lambda: {"sampling_s": 0.0, "probing_s": 0.0})


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
    probe_samples, probe, linearize_at, ...). Returns a ``Result``; ``Result.to_dict()`` is the
    JSON document of DESIGN.md §7 and ``Result.samples`` the final samples (N, C, H, W).
    """
    started = time.perf_counter()
    config = make_config(**options)
    if save_samples_to is not None:
        check_writable(save_samples_to, "--save-samples file")
    loaded = load_model(model, config, shape, load_options)
    loaded_at = time.perf_counter()
    directions = plane_wave_directions(loaded.shape, config.shells, config.directions)
    states = open_states(save_states, config.steps, config.samples, loaded.shape) if save_states else None
    try:
        records, samples = run(loaded, config, directions, states, callback or (lambda event: None))
    finally:
        if states is not None:
            states.close()
    if save_samples_to is not None:
        save_samples(save_samples_to, samples, {"model": loaded.info["id"], "seed": config.seed})
    analysed_at = time.perf_counter()
    document = build_document(loaded, config, directions, records)
    document["timing"] = {"total_s": time.perf_counter() - started, "load_s": loaded_at - started,
                          **records.seconds, "analysis_s": time.perf_counter() - analysed_at}
    return Result(clean(document), samples)


def probed_steps(n_steps: int, every: int) -> set[int]:
    """Steps that get probed: every ``every``-th from the first, and always the last."""
    return set(range(0, n_steps, every)) | {n_steps - 1}


def run(loaded: LoadedModel, config: AnalyzeConfig, directions: ProbeDirections, states, callback: Callback):
    """Sample all batches step by step, recording what the estimators need. -> (Records, final samples)."""
    n = config.samples
    generators = [torch.Generator("cpu").manual_seed(config.seed + i) for i in range(n)]
    batches = [list(range(lo, min(lo + config.batch_size, n))) for lo in range(0, n, config.batch_size)]
    steppers = [loaded.make_stepper() for _ in batches]
    conds = [loaded.conditioning(len(b)) for b in batches]
    noise = per_sample_noise(loaded.shape, generators)
    xs = [stepper.init(noise[b]) for stepper, b in zip(steppers, batches)]
    infos = steppers[0].infos
    probe_at = probed_steps(len(infos), config.probe_every)
    shells = shell_map(*loaded.shape[1:]).numpy()
    probe_cond = loaded.conditioning(config.probe_samples)
    records = Records(infos=list(infos))
    for i, info in enumerate(infos):
        tick = time.perf_counter()
        ys, ds = [], []
        with torch.no_grad():
            for k, stepper in enumerate(steppers):
                y, d, xs[k] = stepper.step(xs[k], i, conds[k], [generators[j] for j in batches[k]])
                ys.append(y)
                ds.append(d)
        y, d = torch.cat(ys), torch.cat(ds)
        if not (torch.isfinite(y).all() and torch.isfinite(d).all()):
            raise ModelOutputError(f"the model produced NaN or Inf at step {i} (sigma={info.sigma:.4g}, "
                                   f"timestep={info.timestep})", "try --dtype float32 or another scheduler")
        _record_fields(records, y, d, shells, config.shells)
        if states is not None:
            states.write(info, y, d)
        records.seconds["sampling_s"] += time.perf_counter() - tick
        tick = time.perf_counter()
        records.gains.append(_probe_step(loaded, config, directions, records, info, y, probe_cond) if i in probe_at else None)
        records.seconds["probing_s"] += time.perf_counter() - tick
        callback({"stage": "sampling", "step": i + 1, "total": len(infos), "sigma": info.sigma, "t": info.t})
    return records, torch.cat([stepper.final(x).cpu() for stepper, x in zip(steppers, xs)])


def _record_fields(records: Records, y: torch.Tensor, d: torch.Tensor, shells: np.ndarray, n_shells: int) -> None:
    for field_, coef, structure in ((y, records.coef_state, records.structure_state),
                                    (d, records.coef_denoised, records.structure_denoised)):
        coef.append(low_mode_coefficients(field_).cpu().numpy())
        sum_f, sum_f2 = fourier_sums(field_)
        s = estimators.connected_structure_factor(sum_f.cpu().numpy(), sum_f2.cpu().numpy(), field_.shape[0])
        structure.append(estimators.radial_average(s, shells, n_shells))


def _probe_step(loaded: LoadedModel, config: AnalyzeConfig, directions: ProbeDirections, records: Records,
                info: StepInfo, y: torch.Tensor, probe_cond: dict | None) -> np.ndarray:
    """Mode gains (P, M) at this step's probe points: the first P samples' y, or y = 0."""
    if config.linearize_at == "zero":
        points = torch.zeros(1, *loaded.shape, device=y.device)
    else:
        points = y[: config.probe_samples].float()
    timestep = info.timestep

    def denoise_at(z: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        sigma = torch.full((z.shape[0],), info.sigma, device=z.device)
        ts = None if timestep is None else torch.full((z.shape[0],), timestep, device=z.device)
        return loaded.denoiser(z, sigma, ts, select_cond(probe_cond, rows))

    def gains(method: str) -> np.ndarray:
        return mode_gains(denoise_at, points, directions.vectors, method, config.fd_step, info.sigma,
                          config.probe_batch, loaded.module).numpy()

    if records.probe_method == "none":
        records.probe_method, records.probe_note = _choose_method(config, loaded)
        if records.probe_method == "jvp" and config.probe == "auto":
            try:
                return gains("jvp")
            except FORWARD_AD_ERRORS as err:
                records.probe_method = "fd"
                records.probe_note = f"forward AD failed ({type(err).__name__}: {str(err).splitlines()[0][:120]}); used finite differences"
    return gains(records.probe_method)


def _choose_method(config: AnalyzeConfig, loaded: LoadedModel) -> tuple[str, str | None]:
    if config.probe != "auto":
        return config.probe, None
    if loaded.half_precision:
        return "fd", "half-precision model: finite differences (forward AD in half precision is not validated)"
    return "jvp", None


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
    coef_state, coef_denoised = np.stack(records.coef_state), np.stack(records.coef_denoised)
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
    return {"t": t_value, "sigma": detection.sigma_of(t_value), "step": infos[step].index,
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
                  **directions.describe()},
        "steps": steps,
        "critical": critical,
    }
    theory = _theory_block(loaded, config, directions, records, curves, critical)
    if theory is not None:
        document["theory"] = theory
    return document
