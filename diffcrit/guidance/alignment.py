"""Class alignment of guided samples: classifier scores and paired statistics.

Scoring. A classifier (``diffcrit.models.scorers``: its forms, loading, decoding) maps images to logits,
images (B, C, H, W) float32 in [-1, 1], logits (B, K). Per sample, with target class c and classifier index k(c)
(``label_map``, else k = c):

    target_prob = softmax(logits)[k(c)]          METRIC_TARGET_PROB
    top1        = 1 if argmax(logits) == k(c)    METRIC_TOP1

Statistics (pure functions, arrays in, floats out). Arms share seeds and target classes, so
sample i of every arm is one matched pair:
  - arm means with a percentile-bootstrap ci95 over samples;
  - paired differences d_i = a_i - b_i: mean, percentile-bootstrap ci95 over pairs, and a
    two-sided p-value of a test of that same mean (H0: E[d] = 0), so the p and the interval shown
    beside it speak of one estimand (DESIGN §10):
      continuous metrics (target_prob): the paired sign-flip permutation test of mean(d) (under H0
        each d_i is as likely -d_i; exact over all 2^N sign patterns when 2^N <= PERMUTATIONS,
        else PERMUTATIONS Monte-Carlo flips seeded by ``seed``);
      top-1 pairs (0/1): McNemar's exact test, the two-sided binomial test of B ~ Bin(B + C, 1/2)
        on the discordant pairs (B: a right and b wrong, C: the reverse), which is the sign-flip
        test of mean(d) for 0/1 data computed exactly; p = 1 when no pair is discordant;
    and the matched-pairs rank-biserial correlation r = (R+ - R-) / (R+ + R-) over the non-zero
    differences (Kerby 2014), in [-1, 1], 0 when all differences are zero (an effect size only).
"""

from __future__ import annotations

import numpy as np
import torch

from ..models.scorers import Scorer, check_scorer, classify, load_scorer, parse_label_map  # noqa: F401 (re-exported)

METRIC_TARGET_PROB = "target_prob"
METRIC_TOP1 = "top1"
METRIC_NAMES = (METRIC_TARGET_PROB, METRIC_TOP1)
EFFECT_SIZE = "matched-pairs rank-biserial correlation (Kerby 2014): (R+ - R-) / (R+ + R-) over non-zero differences"
PERMUTATIONS = 9999  # Monte-Carlo sign flips of the permutation test (exact below 2^N <= this)
TEST_SIGN_FLIP = "sign-flip permutation"
TEST_MCNEMAR = "McNemar exact"
TESTS = {METRIC_TARGET_PROB: TEST_SIGN_FLIP, METRIC_TOP1: TEST_MCNEMAR}  # metric -> test of its mean difference
TEST = {TEST_SIGN_FLIP: f"paired sign-flip permutation test of the mean difference, two-sided "
                        f"(scipy.stats.permutation_test, permutation_type='samples'; exact when 2^N <= {PERMUTATIONS}, "
                        f"else {PERMUTATIONS} random flips); p = 1 when every difference is 0",
        TEST_MCNEMAR: "McNemar's exact test on the discordant pairs, two-sided (scipy.stats.binomtest, p = 1/2); "
                      "p = 1 when no pair is discordant"}
CI = "percentile bootstrap over samples (pairs for differences)"  # scipy.stats.bootstrap, method="percentile"


# --------------------------------------------------------------------------------------------
# Metrics of classifier logits


def logits_to_metrics(logits: torch.Tensor, target_index: np.ndarray) -> dict[str, np.ndarray]:
    """Per-sample ``target_prob`` and ``top1`` (N,) for logits (N, K) and logit indices (N,)."""
    index = torch.as_tensor(target_index, dtype=torch.long)
    prob = torch.softmax(logits.double(), dim=1)
    return {METRIC_TARGET_PROB: prob.gather(1, index[:, None])[:, 0].numpy(),
            METRIC_TOP1: (logits.argmax(1) == index).double().numpy()}


# --------------------------------------------------------------------------------------------
# Statistics


def bootstrap_mean_ci(values: np.ndarray, repeats: int, seed: int, level: float = 0.95) -> tuple[float, float] | None:
    """Percentile-bootstrap interval of the mean of ``values`` (N,); None with no repeats.

    ``scipy.stats.bootstrap`` with ``method="percentile"``: ``repeats`` resamples of the N values with
    replacement (generator ``np.random.default_rng(seed)``, batches of 256), the central ``level``
    interval of their means. One value: its interval is the value itself.
    """
    from scipy.stats import bootstrap

    values = np.asarray(values, dtype=float)
    if repeats <= 0 or values.size == 0:
        return None
    if values.size == 1:  # scipy needs two observations; every resample of one value is that value
        return float(values[0]), float(values[0])
    ci = bootstrap((values,), np.mean, n_resamples=repeats, confidence_level=level, method="percentile",
                   random_state=np.random.default_rng(seed), vectorized=True, batch=256).confidence_interval
    return float(ci.low), float(ci.high)


def sign_flip_p(diffs: np.ndarray, seed: int, resamples: int = PERMUTATIONS) -> float:
    """Two-sided p of the paired sign-flip permutation test of mean(diffs) = 0; 1.0 when all are zero."""
    from scipy.stats import permutation_test

    d = np.asarray(diffs, dtype=float)
    if not np.any(d != 0):
        return 1.0
    result = permutation_test((d,), lambda x, axis: np.mean(x, axis=axis), permutation_type="samples",
                              n_resamples=resamples, alternative="two-sided", vectorized=True,
                              random_state=np.random.default_rng(seed))
    return float(min(1.0, result.pvalue))


def mcnemar_exact_p(a: np.ndarray, b: np.ndarray) -> tuple[float, int, int]:
    """McNemar's exact test of paired 0/1 outcomes: (two-sided p, B, C) with B pairs where only a is 1 and C
    where only b is 1; p = binomtest(B, B + C, 1/2), 1.0 when B + C = 0."""
    from scipy.stats import binomtest

    a, b = np.asarray(a) != 0, np.asarray(b) != 0
    only_a, only_b = int((a & ~b).sum()), int((b & ~a).sum())
    if only_a + only_b == 0:
        return 1.0, 0, 0
    return float(binomtest(only_a, only_a + only_b, 0.5).pvalue), only_a, only_b


def rank_biserial(diffs: np.ndarray) -> float:
    """Matched-pairs rank-biserial correlation r = (R+ - R-) / (R+ + R-) over non-zero differences."""
    from scipy.stats import rankdata

    d = np.asarray(diffs, dtype=float)
    d = d[d != 0]
    if d.size == 0:
        return 0.0
    ranks = rankdata(np.abs(d))
    return float((ranks[d > 0].sum() - ranks[d < 0].sum()) / ranks.sum())


def summarize_arm(values: dict[str, np.ndarray], repeats: int, seed: int) -> dict[str, dict]:
    """Per metric: mean and bootstrap ci95 over samples."""
    return {name: {"mean": float(np.mean(v)), "ci95": _list(bootstrap_mean_ci(v, repeats, seed))}
            for name, v in values.items()}


def paired_comparison(a: np.ndarray, b: np.ndarray, repeats: int, seed: int, test: str = TEST_SIGN_FLIP) -> dict:
    """Arm a versus arm b on the same samples: mean of a - b, its ci95, the p-value of ``test`` (TEST_SIGN_FLIP
    or TEST_MCNEMAR for 0/1 outcomes) of that same mean, the effect size."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired arrays differ in shape: {a.shape} vs {b.shape}")
    d = a - b
    out = {"diff_mean": float(d.mean()), "ci95": _list(bootstrap_mean_ci(d, repeats, seed)), "test": test}
    if test == TEST_MCNEMAR:
        if not np.isin(a, (0, 1)).all() or not np.isin(b, (0, 1)).all():
            raise ValueError("McNemar's test takes 0/1 outcomes")
        out["p_value"], only_a, only_b = mcnemar_exact_p(a, b)
        out["discordant"] = [only_a, only_b]
    elif test == TEST_SIGN_FLIP:
        out["p_value"] = sign_flip_p(d, seed)
    else:
        raise ValueError(f"unknown test {test!r}; allowed: {TEST_SIGN_FLIP}, {TEST_MCNEMAR}")
    return {**out, "effect_size": rank_biserial(d), "n_pairs": int(d.size), "n_nonzero": int(np.count_nonzero(d))}


def bootstrap_peak(per_block: np.ndarray, centers: np.ndarray, repeats: int, seed: int,
                   level: float = 0.95) -> dict:
    """Where a profile peaks: per_block (K, N) outcomes of N paired samples in K blocks, centers (K,) the blocks' t.

    The peak is the block of the largest mean (the first of equals); its ci95 is the percentile interval of the
    peak's t over ``repeats`` resamples of the N samples with replacement (one resample for every block: the pairs
    stay pairs; generator ``np.random.default_rng(seed)``); ``share``: the resamples that peak at the same block.
    """
    per_block, centers = np.asarray(per_block, dtype=float), np.asarray(centers, dtype=float)
    best = int(np.argmax(per_block.mean(axis=1)))
    out = {"index": best, "t": float(centers[best]), "ci95": None, "share": None}
    if repeats <= 0 or per_block.shape[1] < 2:
        return out
    rng = np.random.default_rng(seed)
    peaks = np.empty(repeats, dtype=int)
    for lo in range(0, repeats, 256):  # (K, 256, N) at a time
        rows = rng.integers(0, per_block.shape[1], (min(256, repeats - lo), per_block.shape[1]))
        peaks[lo: lo + len(rows)] = np.argmax(per_block[:, rows].mean(axis=2), axis=0)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(centers[peaks], [tail, 100 - tail])
    return {**out, "ci95": [float(low), float(high)], "share": float(np.mean(peaks == best))}


def _list(ci: tuple[float, float] | None) -> list[float] | None:
    return list(ci) if ci is not None else None


__all__ = ["METRIC_NAMES", "METRIC_TARGET_PROB", "METRIC_TOP1", "Scorer", "bootstrap_mean_ci",
           "bootstrap_peak", "check_scorer",
           "classify", "load_scorer", "logits_to_metrics", "paired_comparison", "parse_label_map", "rank_biserial",
           "mcnemar_exact_p", "sign_flip_p", "summarize_arm"]
