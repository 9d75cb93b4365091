"""Rich rendering on stderr: the progress bar and the analyze summary (the library never prints)."""

from __future__ import annotations

import contextlib
import math
from typing import Iterator, Mapping

from rich.console import Console
from rich.markup import escape
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)
from rich.table import Table

from ..analysis.detection import CONSISTENT_BELOW
from ..report.view import AnalyzeView, Instability
from ..progress import CLONING, GUIDE, NULL, REFINING, REGENERATING, SAMPLING, Callback, ProgressEvent, ignore


# What the bar calls each stage (diffcrit.progress); a command may rename them (guide: its t_c analysis).
STAGE_NAMES = {SAMPLING: "sampling + probing", REFINING: "refining probes", CLONING: "clones", GUIDE: "arm",
               NULL: "Gaussian null", REGENERATING: "forward-backward"}


@contextlib.contextmanager
def progress_callback(console: Console, enabled: bool = True,
                      names: Mapping[str, str] = STAGE_NAMES) -> Iterator[Callback]:
    """A callback for the library's ``ProgressEvent``s: one Rich bar per stage (and label), or nothing."""
    if not enabled:
        yield ignore
        return
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[where]}"), TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        tasks: dict[str, TaskID] = {}

        def callback(event: ProgressEvent) -> None:
            name = " ".join(part for part in (names.get(event.stage, event.stage), event.label) if part)
            if name not in tasks:
                tasks[name] = progress.add_task(escape(name), total=event.total, where="")
            where = "" if event.sigma is None else f"sigma {event.sigma:.3g}"
            progress.update(tasks[name], completed=event.done, total=event.total, where=where)

        yield callback


def _fmt(value, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:.{digits}g}" if isinstance(value, float) else str(value)


def _sparkline(values: list, width: int = 40) -> str:
    from ..report.sparkline import sparkline

    return sparkline(values, width)


def instability_words(found: Instability) -> str:
    """The instability block in one line: the shells where probe trajectories turned unstable, or what their
    absence rules out."""
    n = found.probe_points
    unstable = [f"shell {k}: {round(f * n)}/{n} at t = {_fmt(t)} (ci95 {_interval(ci, '..')})"
                for k, (f, t, ci) in enumerate(zip(found.peak_fraction, found.peak_t, found.peak_ci95, strict=True))
                if f > 0]
    if unstable:
        return "unstable probe trajectories (largest share per shell): " + "; ".join(unstable)
    return (f"no probe trajectory turned unstable ({n} trajectories, {found.probed_steps} probed steps; a share of "
            f"{_fmt(found.detectable_fraction)} or more at a probed step would have shown with probability "
            f"{_fmt(found.detection_power)})")


def render_summary(console: Console, document: dict) -> None:
    """Critical time (the regime's primary marker), every marker with its ci95 and presence, compact curves."""
    result = AnalyzeView.from_document(document)
    critical, theory = result.critical, result.theory
    conditioned = result.model.conditioned()
    title = f"{result.model.id}{f' ({conditioned})' if conditioned else ''} — markers " \
            f"({critical.regime or 'trajectory'} regime)"
    table = Table(title=title, title_justify="left")
    for column in ("marker", "t", "ci95", "presence", "sigma", "step"):
        table.add_column(column, justify="left" if column == "marker" else "right", no_wrap=True)
    for name, marker in critical.markers.items():
        label = name + (" *" if name == critical.primary else "") + (" (multimodal)" if marker.multimodal else "")
        table.add_row(label, _fmt(marker.t), _interval(marker.ci95, ".."), _fmt(marker.presence), _fmt(marker.sigma),
                      _fmt(marker.step))
    console.print(table)
    exact_t = theory.markers.get(critical.primary) if theory is not None else None
    exact = "" if exact_t is None else f"; exact t = {_fmt(exact_t)}"
    verdict = critical.transition
    if verdict is not None:
        detail = "" if verdict.value is None else f" ({verdict.statistic} = {_fmt(verdict.value)}" + \
            (f", ci95 {_interval(verdict.ci95, ' .. ')}" if verdict.ci95 else "") + \
            f"; evidence above {_fmt(verdict.margin)})"
        console.print(critical.transition_words() + detail, highlight=False,
                      style=None if verdict.evidence else "yellow")
        if verdict.evidence and verdict.sampler_calibrated is False:
            console.print("note: this null is the formula f_G, whose sampler allowance is calibrated on Euler "
                          "sampling only (docs/design.md §6a)", style="yellow", highlight=False)
    if result.instability is not None:
        console.print(instability_words(result.instability), highlight=False)
    if critical.found:
        console.print(f"critical t = {_fmt(critical.t)}  ci95 = {_interval(critical.ci95, ' .. ')}"
                      f"  (* primary marker: {critical.primary or ''}{exact})", highlight=False)
    elif verdict is None or critical.regime == "zero":
        console.print(f"no critical time: the primary marker ({critical.primary or ''}) was not found", style="yellow")
    inconsistent = list(result.inconsistent_steps)
    if inconsistent:
        why = " (a guided D(y) is no posterior mean: docs/design.md §2)" if result.model.guided else ""
        console.print(f"{len(inconsistent)} step(s) with an inconsistent x0 estimate "
                      f"(decided fraction > {CONSISTENT_BELOW:g}) left out of the markers: "
                      f"{inconsistent[:8]}{' ...' if len(inconsistent) > 8 else ''}{why}",
                      style="yellow", highlight=False)
    if theory is not None and theory.measured_minus_predicted:
        differences = theory.measured_minus_predicted.items()
        console.print("measured - theory: " + ", ".join(f"{k} = {_fmt(v)}" for k, v in differences), highlight=False)
    shell = critical.decision_shell
    curves = (("decided ", None if shell is None else result.curve("decided", shell)),
              ("s(k=0)  ", result.curve("stiffness", 0)), ("xi(D(y))", result.curve("xi_denoised")))
    for label, values in curves:
        line = _sparkline([] if values is None else list(values[::-1]))  # the view's steps run in ascending t
        if line:
            console.print(f"{label} {line}   (generation order →)", highlight=False)


def _interval(ci, sep: str) -> str:
    return f"{_fmt(ci[0])}{sep}{_fmt(ci[1])}" if ci else "-"
