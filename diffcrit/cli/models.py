"""``diffcrit models``: the built-in models, a listing on stdout (data) or as JSON."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from ..models.builtins import DEFAULT_MODEL, PREFIX, BuiltinEntry, entries
from ._app import app, data_console


@app.command()
def models(as_json: Annotated[bool, typer.Option(
        "--json", help="Print a JSON list of {name, kind, description, conditioning, parameters, default}.")] = False,
           ) -> None:
    """List the built-in models (use as --model builtin:NAME[?k=v&...])."""
    if as_json:
        sys.stdout.write(json.dumps([_describe(entry) for entry in entries()], indent=2) + "\n")
    else:
        render_models(data_console, entries())


def _describe(entry: BuiltinEntry) -> dict[str, Any]:
    """One model as data; ``parameters`` are the ``?key=value`` options with their defaults."""
    name = PREFIX + entry.name
    return {"name": name, "kind": entry.kind, "description": entry.summary, "conditioning": entry.conditioning,
            "parameters": entry.options(), "default": name == DEFAULT_MODEL}


def _size(entry: BuiltinEntry) -> str:
    if entry.path is None:
        return ""
    total = sum(p.stat().st_size for p in entry.path.rglob("*") if p.is_file())
    return f", {total / 2**20:.1f} MB"


def render_models(console: Console, listed: list[BuiltinEntry]) -> None:
    """Name beside a block of kind, conditioning, summary and options: wraps at words at any width."""
    table = Table(title="built-in models", title_justify="left", box=box.SIMPLE_HEAD, show_lines=False)
    table.add_column("name", no_wrap=True)
    table.add_column("kind; conditioning / good for / options (?key=value)")
    for entry in listed:
        described = _describe(entry)
        name = described["name"] + ("\n(default)" if described["default"] else "")
        options = ", ".join(f"{k}={v}" for k, v in entry.options().items()) or "-"
        block = (f"{entry.kind}{_size(entry)}; conditioning: {entry.conditioning}\n{entry.summary}\n"
                 f"options: {options}")
        table.add_row(name, block, end_section=True)
    console.print(table, markup=False, highlight=False)
