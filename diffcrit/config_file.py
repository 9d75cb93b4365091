"""diffcrit.yaml: one YAML file with a section per command (``check:``, ``analyze:``, ``guide:``), each validated
against a JSON Schema (draft 2020-12) with one-line errors naming the file, the section and the key.

The ``check:`` section holds ``diffcrit check``'s tolerances (``release/checking.py``, its schema read off
``Tolerances``); ``analyze:`` and ``guide:`` hold those commands' options (``cli/_config.py``, the schema read off the
command's options). jsonschema and PyYAML load on first use.
"""

from __future__ import annotations

import difflib
import functools
import math
from pathlib import Path
from typing import Any, Mapping

from .errors import UserError
from .io import read_text

SECTIONS = ("check", "analyze", "guide")


def read_section(path: Path | str, section: str) -> Mapping[str, Any] | None:
    """The ``section`` of the YAML file at ``path``; None when the file or the section is empty. A file that is not
    YAML, not a mapping, or has a top-level key other than ``SECTIONS``: one-line user error."""
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(read_text(path, "config"))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise UserError(f"config {path} is not valid YAML{where}") from None
    if data is None:
        return None
    if not isinstance(data, Mapping):
        raise UserError(f"config {path}: expected a mapping with a '{section}:' section")
    unknown = [key for key in data if key not in SECTIONS]
    if unknown:
        raise UserError(f"config {path}: unknown key {unknown[0]!r}", f"allowed: {', '.join(SECTIONS)}")
    return data.get(section)


def check_mapping(data: Any, schema: Mapping[str, Any], source: str) -> dict[str, Any]:
    """``data`` (a section's mapping) checked against ``schema`` (an object schema, no other keys): an unknown key or a
    value the key's property refuses is a one-line user error naming ``source``, the key and what is allowed."""
    if not isinstance(data, Mapping):
        raise UserError(f"{source}: expected a mapping of keys to values, got {type(data).__name__}")
    properties = schema["properties"]
    for key, value in data.items():
        if key not in properties:
            nearest = difflib.get_close_matches(str(key), list(properties), n=1, cutoff=0)
            raise UserError(f"{source}: unknown key {key!r}", f"the nearest: {nearest[0]}" if nearest else None)
        if not validator_class()(properties[key]).is_valid(value):
            raise UserError(f"{source}: {key} must be {describe(properties[key])}, got {value!r}")
    return dict(data)


@functools.lru_cache(maxsize=None)
def validator_class():
    """Draft 2020-12 with finite numbers only: YAML's .nan and .inf are no value (jsonschema loads on first use)."""
    from jsonschema import Draft202012Validator, validators

    def finite(_, value: Any) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)

    numbers = Draft202012Validator.TYPE_CHECKER.redefine("number", finite)
    return validators.extend(Draft202012Validator, type_checker=numbers)


def describe(prop: Mapping[str, Any]) -> str:
    """A property of a schema in words: 'a number >= 0 or null', 'an integer in [2, 1000000]', 'one of a, b'."""
    if "enum" in prop:
        return "one of " + ", ".join("null" if choice is None else str(choice) for choice in prop["enum"])
    kinds = prop["type"] if isinstance(prop["type"], list) else [prop["type"]]
    words = {"number": "a number" + _bounds(prop), "integer": "an integer" + _bounds(prop), "boolean": "true or false",
             "string": "a string", "array": "a list", "null": "null"}
    return " or ".join(words[kind] for kind in kinds)


def _bounds(prop: Mapping[str, Any]) -> str:
    low, high = (_number(prop.get(key)) for key in ("minimum", "maximum"))
    if low is not None and high is not None:
        return f" in [{low}, {high}]"
    return f" >= {low}" if low is not None else f" <= {high}" if high is not None else ""


def _number(value: int | float | None) -> str | None:
    return None if value is None else f"{value:g}" if isinstance(value, float) else str(value)
