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

from ..report.document import describe_conditioning, transition_words
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


def render_summary(console: Console, document: dict) -> None:
    """Critical time (the regime's primary marker), every marker with its ci95 and presence, compact curves."""
    critical = document["critical"]
    theory = document.get("theory") or {}
    conditioned = describe_conditioning(document["model"].get("conditioning"))
    title = f"{document['model']['id']}{f' ({conditioned})' if conditioned else ''} — markers " \
            f"({critical.get('regime', 'trajectory')} regime)"
    table = Table(title=title, title_justify="left")
    for column in ("marker", "t", "ci95", "presence", "sigma", "step"):
        table.add_column(column, justify="left" if column == "marker" else "right", no_wrap=True)
    for name, entry in critical["markers"].items():
        entry = entry or {}
        ci = entry.get("ci95")
        label = (name + (" *" if name == critical.get("primary") else "")
                 + (" (multimodal)" if entry.get("multimodal") else ""))
        table.add_row(label, _fmt(entry.get("t")), f"{_fmt(ci[0])}..{_fmt(ci[1])}" if ci else "-",
                      _fmt(entry.get("presence")), _fmt(entry.get("sigma")), _fmt(entry.get("step")))
    console.print(table)
    primary = critical.get("primary", "")
    exact_t = (theory.get("markers") or {}).get(primary)
    exact = "" if exact_t is None else f"; exact t = {_fmt(exact_t)}"
    verdict = critical.get("transition") or {}
    if verdict:
        value, ci = verdict.get("value"), verdict.get("ci95")
        detail = "" if value is None else f" ({verdict['statistic']} = {_fmt(value)}" + \
            (f", ci95 {_fmt(ci[0])} .. {_fmt(ci[1])}" if ci else "") + f"; evidence above {_fmt(verdict['margin'])})"
        console.print(transition_words(critical) + detail, highlight=False,
                      style=None if verdict.get("evidence") else "yellow")
        if verdict.get("evidence") and verdict.get("sampler_calibrated") is False:
            console.print("note: this null is the formula f_G, whose sampler allowance is calibrated on Euler "
                          "sampling only (docs/design.md §6a)", style="yellow", highlight=False)
    if critical["found"]:
        ci = critical.get("ci95")
        console.print(f"critical t = {_fmt(critical['t'])}  ci95 = {_fmt(ci[0]) + ' .. ' + _fmt(ci[1]) if ci else '-'}"
                      f"  (* primary marker: {primary}{exact})", highlight=False)
    elif not verdict or critical.get("regime") == "zero":
        console.print(f"no critical time: the primary marker ({primary}) was not found", style="yellow")
    inconsistent = ((document.get("diagnostics") or {}).get("total_variance") or {}).get("inconsistent_steps") or []
    if inconsistent:
        guided = ((document["model"].get("conditioning") or {}).get("cfg")) is not None
        why = " (a guided D(y) is no posterior mean: docs/design.md §2)" if guided else ""
        console.print(f"{len(inconsistent)} step(s) with an inconsistent x0 estimate (decided fraction > 1.25) "
                      f"left out of the markers: {inconsistent[:8]}{' ...' if len(inconsistent) > 8 else ''}{why}",
                      style="yellow", highlight=False)
    if theory.get("measured_minus_predicted"):
        differences = theory["measured_minus_predicted"].items()
        console.print("measured - theory: " + ", ".join(f"{k} = {_fmt(v)}" for k, v in differences), highlight=False)
    steps = document["steps"]
    s_low = [(s["stiffness"] or [None])[0] for s in steps]
    xi = [s["xi_denoised"] for s in steps]
    shell = critical.get("decision_shell")
    decided = [None if shell is None else (s.get("decided") or [None] * (shell + 1))[shell] for s in steps]
    for label, values in (("decided ", decided), ("s(k=0)  ", s_low), ("xi(D(y))", xi)):
        line = _sparkline(values)
        if line:
            console.print(f"{label} {line}   (generation order →)", highlight=False)
