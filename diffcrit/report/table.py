"""A result document as long rows: what ``Result.to_pandas`` and the trackers (``report/trackers.py``) read.

An analyze document holds its curves in three places: ``steps[]`` (the trunk: one record per step, generation order),
``clones`` (one entry per branch step) and ``clones.forward_backward`` (likewise). Every one becomes rows

    part, step, t, sigma, shell, observable, value, ci_lo, ci_hi

one per (part, step, shell, observable): ``part`` says where the curve lives (``PARTS``), ``observable`` is its key in
the document, ``shell`` the Fourier shell n (None for a per-step scalar such as ``xi_state``), ``ci_lo``/``ci_hi``
the curve's ``<observable>_ci95`` band where the document has one (NaN where not). A null value has no row, so
``stiffness`` has rows at probed steps only. The curves are found by shape, not by name: any number or list of
numbers a step (or branch step) carries is a curve, except the coordinates and labels named below; a curve added to
the document appears here without a change. Pure and torch-free (``import pandas`` only in ``to_frame``).

A guide document's table is its arms: ``arm, metric, value, ci_lo, ci_hi`` (the metric's mean and ci95).
"""

from __future__ import annotations

import math
from typing import Any, Iterator, Mapping, Sequence

from ..errors import UserError

COLUMNS = ("part", "step", "t", "sigma", "shell", "observable", "value", "ci_lo", "ci_hi")
GUIDE_COLUMNS = ("arm", "metric", "value", "ci_lo", "ci_hi")

PART_TRUNK, PART_CLONES, PART_FORWARD_BACKWARD = "trunk", "clones", "forward_backward"
PARTS = (PART_TRUNK, PART_CLONES, PART_FORWARD_BACKWARD)
BAND = "_ci95"  # `<observable>_ci95`: the observable's band, [lo, hi] per shell (or per step for a scalar)

STEP_PLACE = ("index", "t", "sigma")  # a step record's place: the step, t and sigma columns
BRANCH_PLACE = ("branch_steps", "t", "sigma")  # the clones' branch steps: likewise
STEP_LABELS = ("probed", "x0_consistent", "evaluation")  # per-step flags, not curves
PER_POINT = ("point_stiffness",)  # (P, K) per probe point; ``stiffness`` is its mean over the points
NOT_CURVES = STEP_PLACE + STEP_LABELS + PER_POINT

Row = tuple  # the values of ``COLUMNS`` (or ``GUIDE_COLUMNS``), in order


def curve_rows(document: Mapping[str, Any]) -> list[Row]:
    """Every per-step curve of an analyze document, trunk first, then the clones and their forward-backward."""
    steps = document["steps"]
    out = list(_part_rows(PART_TRUNK, [tuple(s[k] for k in STEP_PLACE) for s in steps], steps))
    clones = document.get("clones")
    if clones:
        places = list(zip(*(clones[k] for k in BRANCH_PLACE), strict=True))
        out += _part_rows(PART_CLONES, places, _per_branch(clones, len(places)))
        if clones.get("forward_backward"):
            out += _part_rows(PART_FORWARD_BACKWARD, places, _per_branch(clones["forward_backward"], len(places)))
    return out


def _per_branch(block: Mapping[str, Any], count: int) -> list[dict]:
    """A block of per-branch-step lists as one record per branch step (its scalars and sub-blocks left out)."""
    lists = {k: v for k, v in block.items() if k not in BRANCH_PLACE and isinstance(v, list) and len(v) == count}
    return [{k: v[b] for k, v in lists.items()} for b in range(count)]


def _part_rows(part: str, places: Sequence[tuple], records: Sequence[Mapping[str, Any]]) -> Iterator[Row]:
    for (step, t, sigma), record in zip(places, records, strict=True):
        for name, value in record.items():
            if name in NOT_CURVES or name.endswith(BAND):
                continue
            band = record.get(name + BAND)
            if _is_number(value):
                yield _row(part, step, t, sigma, None, name, value, band)
            elif isinstance(value, list) and all(v is None or _is_number(v) for v in value):
                for shell, entry in enumerate(value):
                    if entry is not None:
                        yield _row(part, step, t, sigma, shell, name, entry, band[shell] if band else None)


def _row(part: str, step: int, t: float, sigma: float, shell: int | None, name: str, value: float,
         band: Any) -> Row:
    lo, hi = band if isinstance(band, list) and len(band) == 2 else (None, None)
    return (part, step, t, sigma, shell, name, float(value), _float(lo), _float(hi))


def guide_rows(document: Mapping[str, Any]) -> list[Row]:
    """Each arm's metrics of a guide document: (arm, metric, mean, ci_lo, ci_hi), NaN where null."""
    out = []
    for arm in document["arms"]:
        for metric, stat in arm["metrics"].items():
            lo, hi = stat.get("ci95") or (None, None)
            out.append((arm["name"], metric, _float(stat.get("mean")), _float(lo), _float(hi)))
    return out


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _float(value: Any) -> float:
    return float(value) if _is_number(value) else math.nan


# --------------------------------------------------------------------------------------------
# The summary: one number per name


def analyze_summary(document: Mapping[str, Any]) -> dict[str, float]:
    """The numbers of an analyze document's critical block and transition verdicts, flat, by path
    (``critical/t``, ``critical/ci95_lo``, ``critical/markers/decision/t``, ``critical/transition/evidence``,
    ``transition/shell_1/value``): booleans as 0/1, nulls and texts left out."""
    verdicts = {f"shell_{v['shell']}": v for v in document.get("transition") or ()}
    return _flat({"critical": document["critical"], "transition": verdicts})


def guide_summary(document: Mapping[str, Any]) -> dict[str, float]:
    """Likewise for a guide document: ``critical/t``, ``arms/<arm>/<metric>/mean`` and its ci,
    ``comparisons/<arm> - <versus>/<metric>/p_value``, ``sweep/peak/t`` where swept."""
    comparisons = {f"{c['arm']} - {c['versus']}/{c['metric']}": c for c in document["comparisons"]}
    sweep = document.get("sweep")
    return _flat({"critical": document["critical"], "arms": {a["name"]: a["metrics"] for a in document["arms"]},
                  "comparisons": comparisons, "sweep/peak": sweep.get("peak") if sweep else None})


def _flat(parts: Mapping[str, Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, part in parts.items():
        _flatten(part, name, out)
    return out


def _flatten(value: Any, path: str, out: dict[str, float]) -> None:
    if isinstance(value, Mapping):
        for key, entry in value.items():
            _flatten(entry, f"{path}/{key}", out)
    elif isinstance(value, bool):
        out[path] = float(value)
    elif _is_number(value):
        out[path] = float(value)
    elif path.endswith("ci95") and isinstance(value, list) and len(value) == 2 and all(map(_is_number, value)):
        out[f"{path}_lo"], out[f"{path}_hi"] = float(value[0]), float(value[1])


# --------------------------------------------------------------------------------------------
# pandas, where installed


def to_frame(rows: Sequence[Row], columns: Sequence[str] = COLUMNS):
    """The rows as a ``pandas.DataFrame`` (``step`` and ``shell`` as nullable integers); pandas is an extra."""
    try:
        import pandas as pd
    except ImportError:
        raise UserError("to_pandas needs pandas", "pip install 'diffcrit[pandas]'") from None
    frame = pd.DataFrame.from_records(list(rows), columns=list(columns))
    for name in ("step", "shell"):
        if name in frame:
            frame[name] = frame[name].astype("Int64")
    return frame
