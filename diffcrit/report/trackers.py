"""A result logged to experiment trackers (``--report-to``), through accelerate's own (``accelerate.tracking``: the
tracker classes and ``filter_trackers`` that ``Accelerator(log_with=...)`` uses; diffusers' training scripts take
the same names with ``--report_to``).

What a run logs (docs/outputs.md, "Trackers"):
- analyze: every per-step curve of the document (``report/table.py``'s rows: one home) at ``step=`` its step index,
  named ``<observable>`` (a per-step scalar such as ``xi_state``) or ``<observable>/shell_<n>``, its band as
  ``<observable>_ci_lo/...`` and ``_ci_hi/...``, the clones' and forward-backward curves under ``clones/`` and
  ``forward_backward/``; ``t`` and ``sigma`` at each step; then the critical block and the transition verdicts as
  summary values (``table.analyze_summary``: ``critical/t``, ``critical/transition/evidence``, ...), without a step;
- guide: its summary numbers (``table.guide_summary``: ``critical/t``, ``arms/<arm>/<metric>/mean``, ...);
- both: the resolved config as hyperparameters (``store_init_configuration``).

A tracker that writes files (tensorboard, aim: ``requires_logging_directory``) gets a run named by the command and
the document's time (``analyze-20260101-120000``) in ``logging_dir``; the others log to the project ``diffcrit``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from ..distributed import is_main_process
from ..errors import UserError
from .document import KIND_GUIDE
from .table import PART_TRUNK, Row, analyze_summary, curve_rows, guide_summary

PROJECT = "diffcrit"
ALL = "all"
# the pip package of each tracker accelerate knows (accelerate.utils.LoggerType), where it is not the name itself
PACKAGES = {"comet_ml": "comet-ml"}


def tracker_names(report_to: str | Sequence[str] | None, logging_dir: str | Path | None = None) -> list[str]:
    """The trackers ``report_to`` names ("tensorboard", "wandb,mlflow", "all"), checked before any work: each one
    accelerate knows and whose package is installed, with a ``logging_dir`` where it writes files. [] for None."""
    if report_to is None:
        if logging_dir is not None:
            raise UserError("`logging_dir` is where trackers write; no `report_to` names one",
                            "add `report_to`, e.g. tensorboard", option="logging_dir")
        return []
    from accelerate.tracking import LOGGER_TYPE_TO_CLASS, filter_trackers, get_available_trackers
    from accelerate.utils import LoggerType

    names = [n.strip() for n in (report_to.split(",") if isinstance(report_to, str) else report_to) if n.strip()]
    known = [t.value for t in LoggerType]
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise UserError(f"`report_to` {','.join(unknown) or repr(report_to)} is no tracker accelerate knows",
                        f"allowed: {', '.join(known)}", option="report_to")
    available = {str(t) for t in get_available_trackers()}
    missing = [n for n in names if n != ALL and n not in available]
    if missing:
        package = PACKAGES.get(missing[0], missing[0])
        raise UserError(f"`report_to` {missing[0]} needs the package {package}, which is not installed",
                        f"pip install {package}", option="report_to")
    # accelerate expands `all` and drops repeats; its logging_dir check is ours below, naming the parameter
    chosen = [str(t) for t in filter_trackers(names, logging_dir=Path(".") if logging_dir is None else logging_dir)]
    if not chosen:
        raise UserError("`report_to` all: no tracker is installed", "pip install tensorboard (or wandb, mlflow, ...)",
                        option="report_to")
    files = [n for n in chosen if LOGGER_TYPE_TO_CLASS[n].requires_logging_directory]
    if files and logging_dir is None:
        raise UserError(f"`report_to` {files[0]} writes files: give `logging_dir`", "e.g. runs",
                        option="logging_dir")
    return list(dict.fromkeys(chosen))


def log_result(result: Any, report_to: str | Sequence[str], logging_dir: str | Path | None = None) -> list[str]:
    """Log an analyze or guide result (a ``Result``/``GuideResult`` or its document) to the trackers ``report_to``
    names; on the main process only. -> the trackers logged to."""
    document = result.to_dict() if hasattr(result, "to_dict") else result
    names = tracker_names(report_to, logging_dir)
    if not is_main_process():
        return names
    trackers = _started(names, logging_dir, _run_name(document))
    try:
        for tracker in trackers:
            tracker.store_init_configuration(hyperparameters(document["config"]))
            for step, values in step_values(document):
                tracker.log(values, step=step)
            tracker.log(guide_summary(document) if document["kind"] == KIND_GUIDE else analyze_summary(document))
    finally:
        for tracker in trackers:
            tracker.finish()
    return names


def _started(names: Iterable[str], logging_dir: str | Path | None, run_name: str) -> list:
    """The tracker objects, started, as ``Accelerator.init_trackers`` makes them (a run folder in ``logging_dir``
    for those that write files, the project for the others)."""
    from accelerate.tracking import LOGGER_TYPE_TO_CLASS

    trackers = []
    for name in names:
        kind = LOGGER_TYPE_TO_CLASS[name]
        tracker = kind(run_name, str(logging_dir)) if kind.requires_logging_directory else kind(PROJECT)
        tracker.start()
        trackers.append(tracker)
    return trackers


def _run_name(document: Mapping[str, Any]) -> str:
    stamp = "".join(c for c in document["created"][:19] if c.isdigit())  # 2026-01-01T12:00:00 -> 20260101120000
    return f"{document['kind']}-{stamp[:8]}-{stamp[8:]}"


def step_values(document: Mapping[str, Any]) -> list[tuple[int, dict[str, float]]]:
    """[(step, {name: value})] of an analyze document's curves in step order ([] for a guide document)."""
    if document["kind"] == KIND_GUIDE:
        return []
    by_step: dict[int, dict[str, float]] = {}
    for row in curve_rows(document):
        _add_row(by_step.setdefault(row[1], {}), row)
    return sorted(by_step.items())


def _add_row(values: dict[str, float], row: Row) -> None:
    part, _, t, sigma, shell, observable, value, lo, hi = row
    if part == PART_TRUNK:
        values["t"], values["sigma"] = t, sigma
    for suffix, number in (("", value), ("_ci_lo", lo), ("_ci_hi", hi)):
        if number == number:  # not NaN
            values[curve_name(part, observable + suffix, shell)] = number


def curve_name(part: str, observable: str, shell: int | None) -> str:
    """``stiffness/shell_1``, ``xi_state``, ``clones/fraction/shell_2``: a curve's name in the trackers."""
    prefix = "" if part == PART_TRUNK else f"{part}/"
    return prefix + observable + ("" if shell is None else f"/shell_{shell}")


def hyperparameters(config: Mapping[str, Any]) -> dict[str, Any]:
    """The config as trackers take hyperparameters: numbers, texts, booleans and None as they are, the rest as JSON."""
    return {k: v if v is None or isinstance(v, (bool, int, float, str)) else json.dumps(v) for k, v in config.items()}
