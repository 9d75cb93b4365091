"""``diffcrit reproduce``: the claims of arXiv:2603.20092 run as tests, one table (docs/reproduce.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from ._app import app, command_outputs, console, emit_json, user_errors
from ..config import SamplingConfig
from ._options import CacheOpt, OfflineOpt, OutOpt, QuietOpt, limits
from ._render import STAGE_NAMES, progress_callback

VERDICT_STYLES = {"confirmed": "green", "refuted": "red", "inconclusive": "yellow"}


def _summary(document: dict) -> None:
    from ..reproduction.table import cell_value
    from ..reproduction.verdicts import fmt_interval

    table = Table(title=f"reproduce {document['paper']} — {document['power']} power, "
                        f"{document['timing']['total_s']:.0f} s", title_justify="left")
    for column in ("claim", "prediction", "measured (ci95)", "verdict"):
        table.add_column(column, justify="left")
    for claim in document["claims"]:
        measured = cell_value(claim["measured"]) + ("" if claim["ci95"] is None else f" {fmt_interval(claim['ci95'])}")
        style = VERDICT_STYLES[claim["verdict"]]
        table.add_row(claim["id"], cell_value(claim["prediction"]), measured, f"[{style}]{claim['verdict']}[/]")
    console.print(table)
    if document["power"] == "reduced":
        console.print(document["power_note"], style="dim", markup=False, highlight=False)


@app.command()
@user_errors
def reproduce(
    model: Annotated[Optional[list[str]], typer.Option(
        "--model", "-m", help="A trained model for the model claims (repeatable; default: builtin:digits and "
        "builtin:textures with their classifier and training data).", show_default=False)] = None,
    quick: Annotated[bool, typer.Option(
        "--quick", help="Smaller sample counts and fewer steps (minutes on a laptop CPU): verdicts at reduced "
        "power.")] = False,
    classifier: Annotated[Optional[str], typer.Option(
        help="With --model: the classifier for the guidance and class-decision claims (a diffcrit classifier "
        "folder, a TorchScript file, a transformers folder, or 'builtin': the one the model ships).",
        show_default=False)] = None,
    data: Annotated[Optional[str], typer.Option(
        "--data", "-d", help="With --model: its data, as predict reads it, for the speciation claims.",
        show_default=False)] = None,
    seed: Annotated[int, typer.Option(
        help="The first seed of every analyze and guide run: another value runs the battery on another sample range "
        "(compare verdicts over disjoint ranges).", **limits(SamplingConfig, "seed"))] = SamplingConfig.seed,
    offline: OfflineOpt = False,
    cache: CacheOpt = True,
    out: OutOpt = None,
    report: Annotated[Optional[Path], typer.Option(help="Also write the table as Markdown.",
                                                   show_default=False)] = None,
    plot: Annotated[Optional[Path], typer.Option(help="Also write the figure (.png/.svg/.pdf).",
                                                 show_default=False)] = None,
    quiet: QuietOpt = False,
) -> None:
    """Run the paper's claims as tests: claim | prediction | measured (ci95) | verdict (confirmed, refuted,
    inconclusive, with the reason), each with the commands that rerun it alone.

    Writes the JSON document (kind "reproduce") to stdout or --out; progress and the table go to stderr.
    Exit 0 whatever the verdicts (a refutation is a finding); 2 on bad input.
    """
    from ..models.loading import LoadOptions
    from ..reproduction.battery import REPRODUCE, check_reproduce_outputs
    from ..reproduction.battery import reproduce as run_battery

    if plot is not None:
        from ..report.figures import figure_format

        figure_format(plot)
    check_reproduce_outputs(model, classifier, data, [("--out", out), ("--report", report), ("--plot", plot)])
    with progress_callback(console, enabled=not quiet, names={**STAGE_NAMES, REPRODUCE: "claim groups"}) as callback:
        document = run_battery(model, quick=quick, classifier=classifier, data=data, callback=callback,
                               load_options=LoadOptions(offline=offline), cache=cache, seed=seed)
    if not quiet:
        _summary(document)
    with command_outputs(quiet) as outputs:
        if report is not None:
            from ..reproduction.table import markdown

            outputs.write_text(report, markdown(document))
        if plot is not None:
            from ..reproduction.figure import claims_figure_bytes
            from ..report.figures import figure_format

            outputs.write_bytes(plot, claims_figure_bytes(document, figure_format(plot)))
        emit_json(document, out, outputs)
