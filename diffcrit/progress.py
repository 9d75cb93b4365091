"""Progress events: what the library hands its ``callback`` (the CLI renders them).

Every producer (analyze's sampling loop and probe refinement, guide's arms, predict's passes over
the data) reports with one ``ProgressEvent``, so a consumer handles every event the library emits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

# Stages, in the order a run meets them.
SAMPLING = "sampling"  # analyze: steps sampled (and probed) so far, of all steps
REFINING = "refining"  # analyze, auto probe schedule: the step just probed after sampling, of all steps
NULL = "gaussian null"  # analyze: steps of the Gaussian null sampled by the model's sampler, of all steps
CLONING = "cloning"  # analyze --clones: branch steps whose clones are done, of all branch steps
REGENERATING = "forward-backward"  # analyze --clones --classifier: branch steps regenerated, of all branch steps
GUIDE = "guide"  # guide: sample-steps of one arm (``label``) done, of the arm's samples x steps
READING = "reading data"  # predict: images read, of all images
POWER_ITERATION = "power iteration"  # predict: passes of the top-eigenvalue iteration, of the most it takes


@dataclass(frozen=True)
class ProgressEvent:
    """``done`` of ``total`` units of ``stage``; ``label`` names the part (a guide arm); ``sigma``, ``t``
    place a sampling step in the noise schedule (t = log(1 + sigma^2), docs/design.md §2)."""

    stage: str
    done: int
    total: int
    label: str | None = None
    sigma: float | None = None
    t: float | None = None


Callback = Callable[[ProgressEvent], None]


def ignore(event: ProgressEvent) -> None:
    """The callback when none is given."""
