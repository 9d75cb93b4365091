"""Renderings of ``diffcrit check`` outcomes: Markdown for a CI job summary, JUnit XML for CI
test views, and the cell texts the terminal table shares with both. Pure: strings out."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Sequence

from .checking import STATUS_FAIL, STATUS_PASS, STATUS_SKIP, CheckOutcome, any_failed

JUNIT_SUITE = "diffcrit check"
JUNIT_CLASSNAME = "diffcrit.check"

_MARKDOWN_STATUS = {STATUS_PASS: "✅ pass", STATUS_FAIL: "❌ fail", STATUS_SKIP: "➖ skip"}


def format_measured(outcome: CheckOutcome) -> str:
    """The measured difference: signed for shifts in t, unsigned for RMS values; '—' if none."""
    if outcome.measured is None:
        return "—"
    signed = not outcome.unit.startswith("RMS")
    return f"{outcome.measured:+.3f}" if signed else f"{outcome.measured:.3f}"


def format_tolerance(outcome: CheckOutcome) -> str:
    return "—" if outcome.tolerance is None else f"{outcome.tolerance:.3f}"


def verdict(outcomes: Sequence[CheckOutcome]) -> str:
    """One line: ``passed: 11 checks (2 skipped)`` or ``failed: 2 of 11 checks (critical.t, ...)``."""
    failed = [o.name for o in outcomes if o.status == STATUS_FAIL]
    skipped = sum(o.status == STATUS_SKIP for o in outcomes)
    run = len(outcomes) - skipped
    tail = f" ({skipped} skipped)" if skipped else ""
    if failed:
        return f"failed: {len(failed)} of {run} checks{tail}: {', '.join(failed)}"
    return f"passed: {run} checks{tail}"


def render_markdown(outcomes: Sequence[CheckOutcome], *, candidate: str, baseline: str,
                    notes: Sequence[str] = ()) -> str:
    """A Markdown section fit for ``$GITHUB_STEP_SUMMARY``."""
    icon = "❌" if any_failed(outcomes) else "✅"
    lines = [f"## {icon} diffcrit check {verdict(outcomes)}", "",
             f"Candidate `{candidate}` against baseline `{baseline}`.", "",
             "| Check | Result | Measured | Tolerance | Unit | Detail |",
             "|---|---|--:|--:|---|---|"]
    for o in outcomes:
        cells = [f"`{o.name}`", _MARKDOWN_STATUS[o.status], format_measured(o), format_tolerance(o), o.unit, o.detail]
        lines.append("| " + " | ".join(_md_cell(c) for c in cells) + " |")
    if notes:
        lines += ["", "**Notes**", ""] + [f"- {_md_cell(n)}" for n in notes]
    lines += ["", "Measured is candidate − baseline (t units) or the RMS gap of a curve on a common t grid; "
              "a check fails when |measured| exceeds its tolerance.", ""]
    return "\n".join(lines)


def render_junit(outcomes: Sequence[CheckOutcome], *, candidate: str, baseline: str) -> str:
    """JUnit XML: one ``testcase`` per check, ``failure`` or ``skipped`` inside it."""
    failures = sum(o.status == STATUS_FAIL for o in outcomes)
    skipped = sum(o.status == STATUS_SKIP for o in outcomes)
    counts = {"tests": str(len(outcomes)), "failures": str(failures), "errors": "0", "skipped": str(skipped)}
    root = ET.Element("testsuites", name="diffcrit", **counts)
    suite = ET.SubElement(root, "testsuite", name=JUNIT_SUITE, **counts)
    props = ET.SubElement(suite, "properties")
    ET.SubElement(props, "property", name="candidate", value=candidate)
    ET.SubElement(props, "property", name="baseline", value=baseline)
    for o in outcomes:
        case = ET.SubElement(suite, "testcase", classname=JUNIT_CLASSNAME, name=o.name, time="0")
        summary = f"measured {format_measured(o)} {o.unit}, tolerance {format_tolerance(o)}: {o.detail}"
        if o.status == STATUS_FAIL:
            ET.SubElement(case, "failure", message=summary, type="regression").text = summary
        elif o.status == STATUS_SKIP:
            ET.SubElement(case, "skipped", message=o.detail)
        else:
            ET.SubElement(case, "system-out").text = summary
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")
