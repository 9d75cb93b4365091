"""Typed defaults in one place (docs/design.md §10): every CLI option that is a config field takes its default from the
field, never a retyped literal."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest
import typer.main

from diffcrit.cli import app
from diffcrit.config import AnalyzeConfig
from diffcrit.guidance.config import GuideConfig

CLI = Path(__file__).resolve().parent.parent / "diffcrit" / "cli"
# (command, its config, options named like a field but not it: guide's whose None means "the config's" because an
# old alias may give them instead; predict's own batch size and Gaussian-draw seed beside analyze's grid)
COMMANDS = [("analyze", AnalyzeConfig, set()), ("guide", GuideConfig, {"guidance_scale", "window_width", "width"}),
            ("predict", AnalyzeConfig, {"batch_size", "seed"})]


def signature_defaults(command: str) -> dict[str, ast.expr]:
    """{parameter: its default's expression} of the command's function, read from its source."""
    tree = ast.parse((CLI / f"{command}.py").read_text())
    function = next(node for node in ast.walk(tree) if isinstance(node, ast.FunctionDef) and node.name == command)
    args = function.args.args
    return {arg.arg: default for arg, default in zip(args[len(args) - len(function.args.defaults):],
                                                       function.args.defaults, strict=True)}


@pytest.mark.parametrize("command, config, aliased", COMMANDS)
def test_option_defaults_are_the_config_fields(command, config, aliased):
    options = {param.name: param.default for param in typer.main.get_command(app).commands[command].params}
    fields = {f.name: f.default for f in dataclasses.fields(config)}
    shared = (set(options) & set(fields)) - aliased
    assert len(shared) >= 6
    assert {name: options[name] for name in shared} == {name: fields[name] for name in shared}


@pytest.mark.parametrize("command, config, aliased", COMMANDS)
def test_no_default_literal_is_retyped_in_the_cli(command, config, aliased):
    fields = {f.name for f in dataclasses.fields(config)}
    retyped = {name: ast.unparse(node) for name, node in signature_defaults(command).items()
               if name in fields - aliased and not (isinstance(node, ast.Attribute) and
                                                     isinstance(node.value, ast.Name) and node.value.id == "DEFAULTS")}
    assert retyped == {}


def test_the_checker_sees_a_retyped_literal(tmp_path, monkeypatch):
    """The source check fails on a literal default (a copy of the analyze command with one retyped)."""
    source = (CLI / "analyze.py").read_text().replace("= DEFAULTS.shells,", "= 4,", 1)
    (tmp_path / "analyze.py").write_text(source)
    monkeypatch.setattr(f"{__name__}.CLI", tmp_path)
    assert ast.unparse(signature_defaults("analyze")["shells"]) == "4"
    with pytest.raises(AssertionError):
        test_no_default_literal_is_retyped_in_the_cli("analyze", AnalyzeConfig, set())
