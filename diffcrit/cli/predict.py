"""``diffcrit predict``: the critical times the data alone predicts, optionally beside a measurement."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from ..io import check_outputs
from ..config import AnalyzeConfig as DEFAULTS  # analyze's grid: its config's defaults
from ._app import app, command_outputs, console, emit_json, user_errors
from ._options import OutOpt, QuietOpt, limits
from ._render import progress_callback


def _summary(document: dict) -> None:
    table = Table(title=f"{document['data']['source']} — predicted critical times", title_justify="left")
    for column in ("prediction", "t", "sigma", "from"):
        table.add_column(column, justify="left" if column in ("prediction", "from") else "right")
    spec = document["speciation"]
    table.add_row("speciation", f"{spec['t']:.4g}", f"{spec['sigma']:.4g}", f"Lambda = {spec['top_eigenvalue']:.4g}")
    if "patch" in document:
        patch = document["patch"]
        table.add_row(f"patch p={patch['p']}", f"{patch['critical_t']:.4g}", f"{patch['critical_sigma']:.4g}",
                      f"C_Omega(0) = {patch['C_Omega_0']:.4g}")
    compare = document.get("compare")
    if compare and compare["critical_t"]["measured"] is not None:
        table.add_row("measured", f"{compare['critical_t']['measured']:.4g}", "", compare["result"])
    console.print(table)


def _draws(source) -> dict:
    """The draws and seed of builtin:gaussian's random draws as used; None for any other data (not used)."""
    notes = source.notes
    return {"draws": notes.get("draws"), "seed": notes.get("seed")}


@app.command()
@user_errors
def predict(
    data: Annotated[str, typer.Option(
        "--data", "-d", help="Image folder (PNG/JPG..., pixels mapped to [-1, 1]), .npy/.npz array (N,C,H,W) or "
        "(N,H,W) taken as is, or builtin:NAME[?k=v] (patch: its training set; mixture: ±m; gaussian: random-phase "
        "draws; digits, textures: their training data).", show_default=False)],
    patch: Annotated[Optional[int], typer.Option(
        "--patch", "-p", help="Odd patch side p: also predict the patch model's t_c = log(1 + C_Omega(0)).",
        show_default=False)] = None,
    compare: Annotated[Optional[Path], typer.Option(
        "--compare", help="An analyze result JSON: use its noise levels and probe set, and put its measured "
        "curves and critical time beside the predictions.", show_default=False)] = None,
    out: OutOpt = None,
    steps: Annotated[int, typer.Option(
        help="Without --compare: noise levels of the curves (analyze's Karras schedule).",
        **limits(DEFAULTS, "steps"))] = DEFAULTS.steps,
    sigma_min: Annotated[float, typer.Option(help="Without --compare: smallest sigma.")] = DEFAULTS.sigma_min,
    sigma_max: Annotated[float, typer.Option(help="Without --compare: largest sigma.")] = DEFAULTS.sigma_max,
    rho: Annotated[float, typer.Option(help="Without --compare: Karras rho.")] = DEFAULTS.rho,
    shells: Annotated[int, typer.Option(
        help="Without --compare: Fourier shells 0..K-1 of the curves.",
        **limits(DEFAULTS, "shells"))] = DEFAULTS.shells,
    directions: Annotated[int, typer.Option(
        help="Without --compare: plane-wave directions per shell, as analyze probes.",
        **limits(DEFAULTS, "directions"))] = DEFAULTS.directions,
    batch_size: Annotated[int, typer.Option(help="Images per streamed batch.")] = 256,
    draws: Annotated[Optional[int], typer.Option(
        help="builtin:gaussian only: number of random-phase draws (default 4096).", show_default=False)] = None,
    seed: Annotated[Optional[int], typer.Option(
        help="builtin:gaussian only: seed of the draws (default 0).", show_default=False)] = None,
    quiet: QuietOpt = False,
) -> None:
    """Predict critical times from data: speciation log(1 + Lambda), Gaussian-model stiffness, patch t_c.

    Writes a JSON document (kind "predict") to stdout or --out; progress and a summary go to stderr.
    """
    from ..report.document import read_document
    from ..models.datasets import open_data
    from ..analysis.predict import compare_block, default_grid, grid_from_result
    from ..analysis.predict import document as build_document
    from ..analysis.predict import predict as run_prediction

    # 1. Cheap checks before reading any data.
    from ..models.builtins import PREFIX

    data_path = None if data.startswith(PREFIX) else Path(data).expanduser()
    check_outputs(files=[("--out", out)], inputs=[("--data", data_path), ("--compare", compare)])
    result = None
    if compare is not None:
        result = read_document(compare, role="--compare result")
    source = open_data(data, draws=draws, seed=seed)
    if result is not None:
        grid = grid_from_result(result, source.shape)
    else:
        grid = default_grid(source.shape, steps, shells, directions, sigma_min, sigma_max, rho)

    # 2. One pass over the data (more above the full-covariance limit), then the predictions.
    with progress_callback(console, enabled=not quiet) as progress:
        body = run_prediction(source, grid, patch=patch, batch_size=batch_size, progress=progress)
    config = {"data": data, "patch": patch, "compare": None if compare is None else str(compare),
              "grid": grid.source, "shells": grid.shells, "directions": grid.directions,
              "batch_size": batch_size, **_draws(source)}
    if result is None:
        config.update(steps=steps, sigma_min=sigma_min, sigma_max=sigma_max, rho=rho)
    comparison = None if result is None else compare_block(result, body, str(compare))
    document = build_document(body, config, comparison)
    if not quiet:
        _summary(document)
    with command_outputs(quiet) as outputs:
        emit_json(document, out, outputs)
