"""``diffcrit plot``: draw analyze or guide results into a PNG, SVG or PDF (headless)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import UserError
from ..io import check_outputs
from ..report.document import KIND_ANALYZE, KIND_GUIDE, read_document
from ._app import app, command_outputs, user_errors


@app.command()
@user_errors
def plot(
    results: Annotated[list[Path], typer.Argument(
        help="One or more result JSON files (all analyze or all guide); several overlay.", show_default=False)],
    out: Annotated[Path, typer.Option(
        "--out", "-o", help="Figure to write: .png, .svg or .pdf.", show_default=False)] = ...,
    label: Annotated[Optional[list[str]], typer.Option(
        "--label", "-l", help="Legend name per result, in order (default: the file names).",
        show_default=False)] = None,
) -> None:
    """Plot stiffness heatmap and curves, xi curves, markers and t_c (analyze), or arms (guide)."""
    from ..report.figures import figure_bytes, figure_format  # matplotlib loads only for this command

    fmt = figure_format(out)
    check_outputs(files=[("--out", out)], inputs=[("the result", path) for path in results])
    if label and len(label) != len(results):
        raise UserError(f"got {len(label)} --label for {len(results)} results", "give one --label per result")
    docs = [read_document(path, (KIND_ANALYZE, KIND_GUIDE)) for path in results]
    labels = label or _file_labels(results)
    with command_outputs() as outputs:
        outputs.write_bytes(out, figure_bytes(docs, fmt, labels))


def _file_labels(paths: list[Path]) -> list[str]:
    """File stems, or the full paths when two stems collide."""
    stems = [p.stem for p in paths]
    return stems if len(set(stems)) == len(stems) else [str(p) for p in paths]
