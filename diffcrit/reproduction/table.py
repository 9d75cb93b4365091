"""The reproduce document as one Markdown table (``--report``): claim | prediction | measured (ci95) | verdict."""

from __future__ import annotations

from typing import Any, Mapping

from .verdicts import VERDICTS, fmt, fmt_interval


def cell_value(value: Any) -> str:
    """A prediction or measurement as shown in a table: numbers to 4 significant digits, text as is."""
    return fmt(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value or "n/a")


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown(document: Mapping[str, Any]) -> str:
    """Title, power and time, the table (one row per claim), then each row's commands."""
    summary = document["summary"]
    timing = document["timing"]
    lines = [f"# diffcrit reproduce: {document['paper']}", "",
             f"Models: {', '.join(document['config']['models'])}. Power: {document['power']} "
             f"({document.get('power_note', '')}). Time: {timing['total_s']:.0f} s. "
             + ", ".join(f"{summary[v]} {v}" for v in VERDICTS) + ".", "",
             "| id | claim | prediction | measured (ci95) | verdict | reason |", "|---|---|---|---|---|---|"]
    for claim in document["claims"]:
        measured = cell_value(claim["measured"])
        if claim["ci95"] is not None:
            measured += f" {fmt_interval(claim['ci95'])}"
        lines.append("| " + " | ".join(_cell(x) for x in (
            claim["id"], claim["claim"], cell_value(claim["prediction"]), measured, f"**{claim['verdict']}**",
            claim["reason"])) + " |")
    lines += ["", "## Commands (rerun any row alone)", ""]
    for claim in document["claims"]:
        if claim["commands"]:
            lines += [f"- `{claim['id']}`:", *[f"  `{command}`" for command in claim["commands"]]]
    return "\n".join(lines) + "\n"
