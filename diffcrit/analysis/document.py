"""The body of the analyze result document (docs/design.md §9): steps, critical block, clones, diagnostics,
theory; the header comes from report.document."""

from __future__ import annotations

import warnings

import numpy as np

from ..config import AnalyzeConfig
from ..models.loading import LoadedModel
from ..spectral.fourier import ProbeDirections, direction_bins, shell_wave_numbers
from ..report.document import environment, header
from ..sampling import clones
from . import class_decision, detection, estimators, transition
from .critical import critical_block, marker_block
from .curves import CONSISTENCY_MIN_SAMPLES, Curves, bootstrap_curves, compute_curves, consistent_steps, curve_band
from .detection import CONSISTENT_BELOW
from .records import Records


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


def _class_decision(records: Records, config: AnalyzeConfig) -> dict | None:
    """The class decision from the classes of the clones and of the trunk finals (class_decision.py; bootstrap over
    trunk samples); None without a classifier."""
    if records.final_classes is None or not records.clone_classes:
        return None
    steps = sorted(records.clone_classes)
    labels_a, labels_b = (np.stack([records.clone_classes[s][c] for s in steps]) for c in range(clones.PER_TRUNK))
    return class_decision.class_decision(np.array([records.infos[s].t for s in steps]), labels_a, labels_b,
                                         records.final_classes, config.bootstrap, config.seed)


def _class_decision_fb(records: Records, config: AnalyzeConfig) -> dict | None:
    """The forward-backward class decision from the classes of the regenerated trunk finals and of the finals
    themselves (class_decision.py; the same bootstrap); None without a classifier."""
    if records.final_classes is None or not records.regenerated_classes:
        return None
    steps = sorted(records.regenerated_classes)
    return class_decision.class_decision_fb(np.array([records.infos[s].t for s in steps]),
                                            np.stack([records.regenerated_classes[s] for s in steps]),
                                            records.final_classes, config.bootstrap, config.seed)


def _class_decision_marker(found: dict, records: Records) -> dict | None:
    """critical.markers.class_decision (and class_decision_fb): where the halfway crossing lies, with its bootstrap
    summary, the ci95 holding the two branch steps around it."""
    return marker_block(found["t"], {key: found.get(key) for key in ("ci95", "presence", "modes")}, records.infos,
                        found["bracket"])


def _clones_block(records: Records, curves: Curves, resamples: list[Curves], classes: dict | None,
                  classes_fb: dict | None) -> dict | None:
    """The clones' correlation per shell with its bootstrap ci95 (the same resamples of the samples as every
    curve), beside the decided fraction at the same steps, and with a classifier the share of clone pairs whose
    classes agree, the chance agreement A_0 of two independent finals, F = (A - A_0) / (1 - A_0), and the
    forward-backward keep rate K with its F_fb (None without --clones)."""
    if not records.clone_coefs:
        return None
    steps = sorted(records.clone_coefs)
    band = curve_band(resamples, "clones")
    return {"branch_steps": steps, "t": [records.infos[s].t for s in steps],
            "sigma": [records.infos[s].sigma for s in steps], "per_trunk": clones.PER_TRUNK,
            "sampler": "VE ancestral (DDPM posterior) step on the run's sigmas",
            "fraction": curves.clones.tolist(), "fraction_ci95": None if band is None else band.tolist(),
            "decided": [curves.decided[s].tolist() for s in steps],
            "classifier": records.classifier,
            "class_agreement": None if classes is None else classes["agreement"],
            "chance_agreement": None if classes is None else classes["chance"],
            "class_fraction": None if classes is None else classes["fraction"],
            "forward_backward": None if classes_fb is None else {
                "keep_rate": classes_fb["agreement"], "fraction": classes_fb["fraction"],
                "sampler": "each trunk final noised to the branch step's sigma (VE), regenerated by the clones' step"}}


def probe_budget(records: Records, config: AnalyzeConfig) -> dict:
    """Model rows spent on probing against sampling (one row: one sample through the network; a forward under
    classifier-free guidance is two rows, on both sides): sampling = samples x recorded evaluations."""
    rows = 2 if config.guided else 1
    sampling = config.samples * len(records.infos) * rows
    probing = records.probe_forwards * rows
    return {"probing_forwards": probing, "sampling_forwards": sampling,
            "probing_share": probing / sampling if sampling else None,
            "unit": "model rows (one sample's forward); finite differences: 2 per probed vector, JVP: 1"}


def instability_block(records: Records, curves: Curves, points: int, onset: dict | None) -> dict | None:
    """docs/design.md §5: per shell the largest instability fraction over the probed steps, its step and t, and its
    Clopper–Pearson ci95 over the ``points`` probe trajectories; the share of unstable trajectories a probed step
    would have shown with DETECTION_POWER (what an absent ``instability_onset`` rules out). None at y = 0."""
    probed = [i for i, g in enumerate(records.gains) if g is not None]
    if not records.trajectories or not probed:
        return None
    fraction = curves.unstable[probed]  # (S', K)
    peak = np.argmax(fraction, axis=0)
    counts = [int(round(fraction[j, n] * points)) for n, j in enumerate(peak)]
    where = [None if c == 0 else records.infos[probed[j]] for c, j in zip(counts, peak, strict=True)]
    return {"probe_points": points, "probed_steps": len(probed), "depth": estimators.UNSTABLE_DEPTH,
            "peak_fraction": [c / points for c in counts],
            "peak_ci95": [list(estimators.fraction_ci95(c, points)) for c in counts],
            "peak_step": [None if w is None else w.index for w in where],
            "peak_t": [None if w is None else w.t for w in where],
            "onset_found": onset is not None,
            "detectable_fraction": estimators.detectable_fraction(points),
            "detection_power": estimators.DETECTION_POWER,
            "rule": "a probe point is unstable in a shell when its shell stiffness is below -depth; "
                    "detectable_fraction: the share of unstable trajectories that shows at a probed step with "
                    "detection_power"}


# The Tweedie ratio is formed only where the expected gain is resolved.
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
    classes = _class_decision(records, config)
    if classes is not None:  # a marker beside the others, never the primary (critical.t does not come from it)
        critical["markers"][class_decision.MARKER] = _class_decision_marker(classes, records)
    classes_fb = _class_decision_fb(records, config)
    if classes_fb is not None:  # the forward-backward estimate of the same time, beside it
        critical["markers"][class_decision.MARKER_FB] = _class_decision_marker(classes_fb, records)
    # a null sampled by the model's own sampler holds that sampler's bias; the formula's allowance is calibrated on
    # Euler (ODE) sampling only (docs/design.md §6a)
    euler = loaded.info.get("scheduler") == "KarrasEuler" and config.churn == 0
    critical["transition"]["sampler_calibrated"] = critical["transition"].get("null") == "sampled" or euler
    decided_band = curve_band(resamples, "decided")
    # the unstable share of P probe trajectories is a binomial count: Clopper–Pearson per step (a bootstrap over the
    # points collapses to [0, 0] at none unstable); one point at y = 0 is no sample, so it has no interval
    unstable_band = None if config.linearize_at == "zero" else \
        estimators.fraction_bands(curves.unstable, config.probe_samples)
    t = np.array([info.t for info in records.infos])
    if decided_band is not None:  # the sampler's discretisation error in t is part of the interval (transition.py)
        decided_band = transition.widen_band(t, decided_band, transition.allowed_shift(t))
    sigma = np.array([info.sigma for info in records.infos])
    gaussian = estimators.gaussian_stiffness(curves.power_final, sigma)
    shell = records.shell_of_gains(directions.shell.numpy())
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
            "gaussian_decided": curves.gaussian_decided[i].tolist(),
            "null_decided": None if curves.null_decided is None else curves.null_decided[i].tolist(),
            "gaussian_stiffness": gaussian[i].tolist(),
            "unstable_fraction": curves.unstable[i].tolist() if probed else None,
            "unstable_fraction_ci95": unstable_band[i].tolist() if probed and unstable_band is not None else None,
            "point_stiffness": (estimators.point_stiffness(gains, shell, directions.n_shells).tolist()
                                if probed else None),
            "x0_consistent": bool(consistent[i]),
            **({"evaluation": info.evaluation} if info.evaluation is not None else {}),
        })
    points = 1 if config.linearize_at == "zero" else config.probe_samples
    document = {
        **header("analyze", config.to_dict(), model=loaded.info,
                 environment=environment(loaded.device, records.probe_method, config.dtype, records.probe_note)),
        "shells": shell_wave_numbers(loaded.shape[1], loaded.shape[2], config.shells),
        "probe": {"method": records.probe_method, "linearize_at": config.linearize_at,
                  "probe_points": points, "shell_gain": config.shell_gain,
                  "fd_step": config.fd_step if records.probe_method == "fd" else None,
                  "probed_steps": sum(g is not None for g in records.gains),
                  "schedule": records.schedule, "budget": probe_budget(records, config),
                  **directions.describe()},
        "final_power": curves.power_final.tolist(),
        "steps": steps,
        "critical": critical,
        "transition": critical.pop("transition_by_shell"),
        "instability": instability_block(records, curves, points,
                                         critical["markers"].get(detection.INSTABILITY_ONSET)),
        "clones": _clones_block(records, curves, resamples, classes, classes_fb),
        "diagnostics": diagnostics_block(records, directions, curves, consistent, side),
    }
    theory = _theory_block(loaded, config, directions, records, curves, critical)
    if theory is not None:
        document["theory"] = theory
    return document
