"""examples/quickstart.ipynb runs offline: every code cell in order, in one namespace, in a fresh folder, with
matplotlib's Agg backend (no kernel, no jupyter dependency)."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.pyplot as plt

NOTEBOOK = Path(__file__).resolve().parent.parent / "examples" / "quickstart.ipynb"


def code_cells(path: Path) -> list[str]:
    notebook = json.loads(path.read_text())
    assert notebook["nbformat"] == 4
    return ["".join(cell["source"]) for cell in notebook["cells"] if cell["cell_type"] == "code"]


def run_cells(cells: list[str]) -> dict:
    namespace: dict = {"__name__": "__main__"}
    for number, source in enumerate(cells):
        exec(compile(source, f"{NOTEBOOK.name} cell {number}", "exec"), namespace)
    return namespace


def test_the_quickstart_notebook_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    plt.switch_backend("Agg")
    try:
        namespace = run_cells(code_cells(NOTEBOOK))
    finally:
        plt.close("all")
    assert (tmp_path / "mixture.json").is_file()
    assert namespace["again"].to_pandas().equals(namespace["frame"])
    assert len(namespace["decided"]) == 12  # the decided fraction of shell 0 at every step
