"""``diffcrit models``: the built-in models."""

from __future__ import annotations

from rich.table import Table

from ..builtins import DEFAULT_MODEL, entries
from ._app import app, console


@app.command()
def models() -> None:
    """List the built-in models (use as --model builtin:NAME[?k=v&...])."""
    table = Table(title="built-in models", title_justify="left")
    for column in ("name", "kind", "size", "conditioning", "good for", "options"):
        table.add_column(column, no_wrap=column == "name", overflow="fold")
    for entry in entries():
        size = "-"
        if entry.path is not None:
            total = sum(p.stat().st_size for p in entry.path.rglob("*") if p.is_file())
            size = f"{total / 2**20:.1f} MB"
        options = ", ".join(f"{k}={v}" for k, v in entry.options().items())
        name = f"builtin:{entry.name}" + (" (default)" if f"builtin:{entry.name}" == DEFAULT_MODEL else "")
        table.add_row(name, entry.kind, size, entry.conditioning, entry.summary, options or "-")
    console.print(table)
