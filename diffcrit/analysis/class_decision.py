"""When the class is decided: clone pairs scored by a classifier (DESIGN §10; issue 20, item 3).

Pure estimators. ``analyze --clones G --classifier`` labels the clones' and the trunk's final samples with
``models.scorers.predicted_classes`` (argmax logit) and passes the labels here (analysis/document.py).

At each branch step b (t_b, generation order: t decreasing), every trunk sample i is continued twice with fresh
noise (``sampling/clones.py``); a classifier labels both finals, a_i(b) and c_i(b). With N trunk samples:

    A(t_b)  = (1/N) sum_i [a_i(b) == c_i(b)]                     agreement of the clone pairs
    A_0     = sum_k n_k (n_k - 1) / (N (N - 1))                 chance agreement: two independent samples of the
                                                                 model share a class (n_k: finals labelled k;
                                                                 the unbiased estimate of sum_k p_k^2)
    F(t_b)  = (A(t_b) - A_0) / (1 - A_0)                         0 at chance, 1 once every pair agrees
    class_decision = the t where F crosses 1/2 (``detection.decision``: halfway from chance to 1, read off the
                     monotone fit), with a percentile-bootstrap ci95 over trunk samples (a resample keeps each
                     sample's pairs at every branch step and re-estimates A_0 from the same resample); ``bracket``:
                     the two branch steps around the crossing (the linear reading between them is an assumption,
                     so the marker's ci95 in the document holds them, as a probe-based marker's holds its probed
                     steps).

Forward-backward (Sclocchi, Favero, Wyart 2025; ``sampling/forward_backward.py``): at the same branch steps every
trunk final x0_i is noised to sigma_b and regenerated with fresh noise; r_i(b) is the regenerated final's label.

    K(t_b)  = (1/N) sum_i [r_i(b) == a_i]                        keep rate (a_i: x0_i's own label); 1 at small t,
                                                                 A_0 where the regeneration starts from pure noise
    F_fb    = (K(t_b) - A_0) / (1 - A_0)
    class_decision_fb = the t where F_fb crosses 1/2, with the same reading and bootstrap as class_decision.

The two agree for a consistent model: two clones share y(t_b), whose posterior over finals is p(x0 | y); x0_i and
its regeneration share y = x0_i + sigma_b z, with x0_i itself a draw of p(x0 | y) when the model's noised finals
have its trajectories' marginal at t_b. Then K(t_b) = A(t_b) exactly (both are E_y sum_k p(k | y)^2).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from .detection import DECIDED_LEVEL, decision, decision_bracket, summarize_bootstrap

MARKER = "class_decision"  # a marker of critical.markers, never the primary
MARKER_FB = "class_decision_fb"  # the forward-backward estimate of the same time, a marker beside it


def clone_agreement(labels_a: np.ndarray, labels_b: np.ndarray) -> np.ndarray:
    """(G,) share of pairs whose two clones got the same label; labels (G, N) int, branch steps by trunk samples."""
    labels_a, labels_b = np.asarray(labels_a), np.asarray(labels_b)
    if labels_a.shape != labels_b.shape or labels_a.ndim != 2:
        raise ValueError(f"clone labels must be two (G, N) arrays, got {labels_a.shape} and {labels_b.shape}")
    return (labels_a == labels_b).mean(axis=1)


def chance_agreement(labels: np.ndarray) -> float:
    """Probability that two independent samples share a label, sum_k n_k (n_k - 1) / (N (N - 1)), from the labels
    (N,) of N >= 2 independent final samples."""
    labels = np.asarray(labels).ravel()
    n = labels.size
    if n < 2:
        raise ValueError("chance agreement needs at least two samples")
    counts = np.unique(labels, return_counts=True)[1].astype(float)
    return float((counts * (counts - 1)).sum() / (n * (n - 1)))


def decided_class_fraction(agreement: np.ndarray, chance: float) -> np.ndarray:
    """(G,) F = (A - A_0) / (1 - A_0); NaN everywhere when A_0 = 1 (one class only: nothing to decide)."""
    agreement = np.asarray(agreement, dtype=float)
    if chance >= 1:
        return np.full_like(agreement, np.nan)
    return (agreement - chance) / (1 - chance)


def keep_rate(regenerated: np.ndarray, final_labels: np.ndarray) -> np.ndarray:
    """(G,) share of samples whose regenerated final keeps the class of their own final; ``regenerated`` (G, N) int,
    branch steps by trunk samples, ``final_labels`` (N,)."""
    regenerated, final_labels = np.asarray(regenerated), np.asarray(final_labels)
    if regenerated.ndim != 2 or regenerated.shape[1:] != final_labels.shape:
        raise ValueError(f"regenerated labels must be (G, N) with N = {final_labels.shape}, got {regenerated.shape}")
    return (regenerated == final_labels[None]).mean(axis=1)


def class_decision(t_branch: np.ndarray, labels_a: np.ndarray, labels_b: np.ndarray, final_labels: np.ndarray,
                   repeats: int, seed: int, level: float = DECIDED_LEVEL) -> dict:
    """The class decision marker from clone labels (G, N) at branch times ``t_branch`` (G,) and the labels (N,) of
    the trunk samples' own finals (for A_0): t, bootstrap ci95 / presence / modes (``summarize_bootstrap``), and the
    curves it was read from (``agreement``: A per branch step)."""
    labels_a, labels_b = np.asarray(labels_a), np.asarray(labels_b)
    return _halfway(t_branch, lambda rows: clone_agreement(labels_a[:, rows], labels_b[:, rows]), final_labels,
                    repeats, seed, level)


def class_decision_fb(t_branch: np.ndarray, regenerated: np.ndarray, final_labels: np.ndarray, repeats: int,
                      seed: int, level: float = DECIDED_LEVEL) -> dict:
    """The forward-backward class decision from the labels (G, N) of the trunk finals noised to each branch time
    ``t_branch`` (G,) and regenerated, and the labels (N,) of the finals themselves: as ``class_decision``, with the
    keep rate K in place of the clone agreement (``agreement``: K per branch step)."""
    regenerated, final_labels = np.asarray(regenerated), np.asarray(final_labels)
    return _halfway(t_branch, lambda rows: keep_rate(regenerated[:, rows], final_labels[rows]), final_labels,
                    repeats, seed, level)


def _halfway(t_branch: np.ndarray, agreement_of: Callable[[np.ndarray], np.ndarray], final_labels: np.ndarray,
             repeats: int, seed: int, level: float) -> dict:
    """Where (A - A_0) / (1 - A_0) crosses ``level``, A = ``agreement_of(rows)`` (G,) on the trunk samples ``rows``,
    with the percentile bootstrap over trunk samples (every resample re-estimates A and A_0 on the same rows)."""
    t_branch, final_labels = np.asarray(t_branch, dtype=float), np.asarray(final_labels)
    n = final_labels.size
    every = np.arange(n)
    chance = chance_agreement(final_labels)
    agreement = agreement_of(every)
    fraction = decided_class_fraction(agreement, chance)
    bracket = decision_bracket(t_branch, fraction, level)
    out = {"t": decision(t_branch, fraction, level), "bracket": None if bracket is None else list(bracket),
           "level": level, "chance": chance, "agreement": agreement.tolist(), "fraction": fraction.tolist(),
           "t_branch": t_branch.tolist(), "ci95": None, "presence": None}
    if repeats <= 0:
        return out
    rng = np.random.default_rng(seed)
    found = []
    for _ in range(repeats):
        rows = rng.integers(0, n, n)
        resampled = decided_class_fraction(agreement_of(rows), chance_agreement(final_labels[rows]))
        found.append(decision(t_branch, resampled, level))
    summary = summarize_bootstrap(found)
    return {**out, "ci95": summary["ci95"], "presence": summary["presence"], "modes": summary["modes"]}


__all__ = ["MARKER", "MARKER_FB", "chance_agreement", "class_decision", "class_decision_fb", "clone_agreement",
           "decided_class_fraction", "keep_rate"]
