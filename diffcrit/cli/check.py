"""``diffcrit check``: gate a release on the critical time staying where the baseline put it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from ..release.summary import format_measured, format_tolerance, render_junit, render_markdown, verdict
from ..release.checking import (STATUS_FAIL, STATUS_PASS, any_failed, check_compatible, check_same_shape,
                                compare_results, config_differences, load_tolerances, outcomes_to_dict)
from ..errors import UserError
from ..io import check_outputs
from ..report.document import read_document, write_document
from ._app import EXIT_CHECK_FAILED, EXIT_OK, app, command_outputs, console, user_errors, write_stdout

_STATUS_STYLE = {STATUS_PASS: "green", STATUS_FAIL: "bold red"}


@app.command()
@user_errors
def check(
    candidate: Annotated[Optional[Path], typer.Argument(
        help="Candidate analyze result JSON. Leave out and give --model to analyse one now.",
        show_default=False)] = None,
    baseline: Annotated[Path, typer.Option(
        "--baseline", "-b", help="Baseline analyze result JSON to compare against.", show_default=False)] = ...,
    model: Annotated[Optional[str], typer.Option(
        "--model", "-m", help="Analyse this model (hub id, folder or builtin:NAME) with the baseline's config "
        "and check the result.", show_default=False)] = None,
    config: Annotated[Optional[Path], typer.Option(
        "--config", "-c", help="YAML file whose 'check:' section sets tolerances (default: documented defaults).",
        show_default=False)] = None,
    report: Annotated[Optional[Path], typer.Option(
        "--report", help="Write a Markdown summary (e.g. for $GITHUB_STEP_SUMMARY).", show_default=False)] = None,
    junit: Annotated[Optional[Path], typer.Option(
        "--junit", help="Write JUnit XML, one test case per check.", show_default=False)] = None,
    save_candidate: Annotated[Optional[Path], typer.Option(
        "--save-candidate", help="With --model: also write the candidate's analyze result JSON.",
        show_default=False)] = None,
    device: Annotated[Optional[str], typer.Option(
        "--device", help="With --model: run on this device instead of the baseline's (auto, cpu, cuda, cuda:N, mps).",
        show_default=False)] = None,
    as_json: Annotated[bool, typer.Option(
        "--json", help="Print the outcomes as JSON on stdout.")] = False,
) -> None:
    """Compare a candidate with a baseline: critical time (with CIs), markers, stiffness and xi curves.

    Exit 0 when every check passes, 1 when one fails, 2 on bad input.
    """
    # 1. Cheap checks before any analysis: arguments, outputs, tolerances, the baseline, the model's shape.
    if (candidate is None) == (model is None):
        raise UserError("give either a candidate result JSON or --model, not both" if candidate
                        else "nothing to check: give a candidate result JSON or --model",
                        "diffcrit check candidate.json --baseline baseline.json")
    if model is None and (save_candidate or device):
        raise UserError("--save-candidate and --device need --model")
    check_outputs(files=[("--report", report), ("--junit", junit), ("--save-candidate", save_candidate)],
                  inputs=[("the candidate", candidate), ("--baseline", baseline), ("--config", config),
                          ("the model folder", _model_source(model))])
    tolerances = load_tolerances(config)
    base_doc = read_document(baseline, role="baseline")
    if model is not None:
        _check_model_shape(model, base_doc)

    # 2. The candidate: read it, or analyse the model with the baseline's config (saved once it compares).
    if model is not None:
        cand_doc = _analyse_candidate(model, base_doc, device)
        cand_label = model
    else:
        cand_doc = read_document(candidate, role="candidate")
        cand_label = str(candidate)
    check_compatible(cand_doc, base_doc)

    # 3. Compare, render, write every output together (all or nothing), exit.
    outcomes = compare_results(cand_doc, base_doc, tolerances)
    notes = config_differences(cand_doc, base_doc)
    render_check(console, outcomes, cand_label, str(baseline))
    for note in notes:
        console.print(f"note: {note}", style="dim", markup=False, highlight=False)
    failed = any_failed(outcomes)
    console.print(verdict(outcomes), style="bold red" if failed else "bold green", markup=False, highlight=False)
    with command_outputs() as outputs:
        if save_candidate is not None:
            outputs.write_text(save_candidate, write_document(cand_doc))
        if report is not None:
            outputs.write_text(report, render_markdown(outcomes, candidate=cand_label, baseline=str(baseline),
                                                       notes=notes))
        if junit is not None:
            outputs.write_text(junit, render_junit(outcomes, candidate=cand_label, baseline=str(baseline)))
        if as_json:
            write_stdout(json.dumps(outcomes_to_dict(outcomes, tolerances, notes), indent=2) + "\n")
    raise typer.Exit(EXIT_CHECK_FAILED if failed else EXIT_OK)


def _model_source(model: str | None) -> Path | None:
    """The folder ``--model`` reads (None without --model); torch loads only when a model is given."""
    if model is None:
        return None
    from ..models.loading import model_source

    return model_source(model)


def _check_model_shape(model: str, baseline: dict[str, Any]) -> None:
    """The model must sample in the baseline's shape: read from its config (no weights, no sampling)."""
    from ..models.loading import model_shape

    config = baseline.get("config") or {}
    shape = model_shape(model, height=config.get("height"), width=config.get("width"))
    if shape is not None:
        check_same_shape(shape, baseline["model"]["shape"])


def _analyse_candidate(model: str, baseline: dict[str, Any], device: str | None) -> dict[str, Any]:
    """Run ``diffcrit.analyze`` with the baseline's resolved config (imported late: torch is heavy)."""
    import diffcrit

    options = dict(baseline.get("config") or {})
    if device is not None:
        options["device"] = device
    with console.status(f"analysing {model} with the baseline's config", spinner="dots"):
        result = diffcrit.analyze(model, **options)
    return result.to_dict() if hasattr(result, "to_dict") else result


def render_check(out: Console, outcomes, candidate: str, baseline: str) -> None:
    """The check table; where a detail column would get under 40 characters (80-column CI logs), the
    details follow the table, one per check, instead of wrapping every few characters."""
    table = _table(outcomes, candidate, baseline, details=False)
    if Measurement.get(out, out.options, table).maximum + _DETAIL_WIDTH <= out.width:
        out.print(_table(outcomes, candidate, baseline, details=True))
        return
    out.print(table)
    details = Table.grid(padding=(0, 2))
    details.add_column(no_wrap=True)
    details.add_column()
    for o in outcomes:
        details.add_row(Text(o.name), Text(o.detail), style=_STATUS_STYLE.get(o.status, "dim"))
    out.print(details)


_DETAIL_WIDTH = 40


def _table(outcomes, candidate: str, baseline: str, details: bool) -> Table:
    table = Table(title=f"diffcrit check: {candidate} against {baseline}", title_justify="left", expand=False)
    table.add_column("check", no_wrap=True)
    table.add_column("result", no_wrap=True)
    table.add_column("measured", justify="right", no_wrap=True)
    table.add_column("tolerance", justify="right", no_wrap=True)
    table.add_column("unit", no_wrap=True)
    if details:
        table.add_column("detail", min_width=_DETAIL_WIDTH)
    for o in outcomes:
        cells = (o.name, o.status, format_measured(o), format_tolerance(o), o.unit) + ((o.detail,) if details else ())
        table.add_row(*(Text(c) for c in cells), style=_STATUS_STYLE.get(o.status, "dim"))
    return table
