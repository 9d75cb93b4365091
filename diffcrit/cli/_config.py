"""``--config FILE``: a command's options from its section of a diffcrit.yaml (``analyze:``, ``guide:``).

Keys are the command's options as the flags spell them, without the leading dashes (``batch-size: 32``, ``offline:
true``); values are what the flag takes. The section is checked against a JSON Schema read off the command's own
options (``options_schema``: types, ranges, choices; the one source is the command), then handed to click as the
context's ``default_map`` by an eager callback, so a flag given on the command line overrides the file.
"""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Any, Optional

import typer

from ..config_file import check_mapping, read_section, validator_class
from ..errors import UserError
from ._app import fail

# Options that make no sense in a file: the file itself, and what only prints (--help; --version is the root's).
REFUSED = ("config", "help", "version")


def file_keys(command: Any) -> dict[str, Any]:
    """{key: option} of ``command``: every visible option under its long flag without the dashes, less ``REFUSED``."""
    keys = {}
    for param in command.params:
        flags = [opt for opt in param.opts if opt.startswith("--")]
        if flags and not getattr(param, "hidden", False) and flags[0][2:] not in REFUSED:
            keys[flags[0][2:]] = param
    return keys


def options_schema(command: Any) -> dict[str, Any]:
    """The JSON Schema of ``command``'s section: each key's type, range (``minimum``/``maximum``) and choices
    (``enum``) as its option declares them; null where the option's default is None; no other key."""
    properties = {key: _property(param) for key, param in file_keys(command).items()}
    return {"$schema": validator_class().META_SCHEMA["$schema"], "type": "object", "properties": properties,
            "additionalProperties": False}


_JSON_TYPES = {bool: "boolean", int: "integer", float: "number", str: "string", Path: "string"}


def _property(param: Any) -> dict[str, Any]:
    """One option's property: its choices (``enum``), or its type and range; an array of them for a repeated option;
    null as well where the option's default is None (not given)."""
    described = param.type_descriptor
    if described.choices is not None:
        prop: dict[str, Any] = {"enum": list(described.choices)}
    else:
        kind = bool if getattr(param, "is_flag", False) else _element_type(described)
        bounds = {"minimum": getattr(param, "min", None), "maximum": getattr(param, "max", None)}
        prop = {"type": _JSON_TYPES.get(kind, "string"), **{key: v for key, v in bounds.items() if v is not None}}
    if described.is_list:
        prop = {"type": "array", "items": prop}
    if param.default is None and not param.required:
        prop = {**prop, "enum": [*prop["enum"], None]} if "enum" in prop else {**prop, "type": [prop["type"], "null"]}
    return prop


def _element_type(described: Any) -> Any:
    """The Python type of one value of the option (``list[int]`` -> int)."""
    return typing.get_args(described.annotation)[0] if described.is_list else described.annotation


def read_options(ctx: typer.Context, path: Optional[Path]) -> Optional[Path]:
    """The eager callback of ``--config``: the command's section, checked, as the context's ``default_map`` (flags
    override it); one line and exit 2 on a bad file."""
    if path is None or ctx.resilient_parsing:
        return path
    section = ctx.command.name
    try:
        data = read_section(path, section)
        if data is None:
            return path
        source = f"config {path}: {section}"
        refused = [key for key in data if key in REFUSED]
        if refused:
            raise UserError(f"{source}: {refused[0]} cannot be set in a config file",
                            f"drop it (give --{refused[0]} on the command line)")
        values = check_mapping(data, options_schema(ctx.command), source)
    except UserError as err:
        fail(err.message, err.hint)
    keys = file_keys(ctx.command)
    ctx.default_map = {**(ctx.default_map or {}), **{keys[key].name: value for key, value in values.items()}}
    return path
