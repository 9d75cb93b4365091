"""Typed defaults in one place (docs/design.md §10): every CLI option that is a config field takes its default from the
field, never a retyped literal, and its range or choices from the field's declaration."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest
import typer.main

from cli_checks import one_line_error, run
from diffcrit.cli import app
from diffcrit.config import AnalyzeConfig, allowed, make_config
from diffcrit.errors import UserError
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


# -- ranges and choices in one home: the config field's declaration (config.allowed) ----------------------------------

# Options that take a field's range under another name (guide's old hidden names); predict's own batch size and
# Gaussian-draw seed are no analyze field.
OLD_NAMES = {"scale": "guidance_scale", "width": "window_width"}
OWN = {"predict": {"batch_size", "seed"}}


def option_range(param) -> dict:
    """What the CLI option accepts, in ``config.allowed``'s form: {"choices"} or {"min", "max"}."""
    choices = param.type_descriptor.choices
    return {"choices": tuple(choices)} if choices is not None else {"min": param.min, "max": param.max}


def declared_range(config, name) -> dict:
    declared = allowed(config, name)
    if "choices" in declared:
        return {"choices": declared["choices"]}
    return {"min": declared.get("min"), "max": declared.get("max")}


@pytest.mark.parametrize("command, config, aliased", COMMANDS)
def test_every_option_of_a_field_takes_the_declared_range(command, config, aliased):
    """Each option that sets a config field checks, shows and completes what the field declares, and nothing else."""
    fields = {f.name for f in dataclasses.fields(config)}
    params = typer.main.get_command(app).commands[command].params
    pairs = [(param, OLD_NAMES.get(param.name, param.name)) for param in params]
    ranged = {param.name: (option_range(param), declared_range(config, field)) for param, field in pairs
              if field in fields and param.name not in OWN.get(command, ())}
    assert sum(1 for shown, _ in ranged.values() if shown != {"min": None, "max": None}) >= 3
    assert {name: shown for name, (shown, _) in ranged.items()} == {name: want for name, (_, want) in ranged.items()}


@pytest.mark.parametrize("command", [command for command, _, _ in COMMANDS])
def test_no_range_is_retyped_in_the_cli(command):
    """No option of the command's source writes ``min=`` / ``max=`` itself: ranges come from ``limits``."""
    tree = ast.parse((CLI / f"{command}.py").read_text())
    retyped = [node.lineno for node in ast.walk(tree) if isinstance(node, ast.keyword) and node.arg in ("min", "max")]
    assert retyped == []


@pytest.mark.parametrize("args, fragments", [
    (["analyze", "--steps", "1"], ["'--steps'", "greater than or equal to 2"]),
    (["guide", "--model", "builtin:digits", "--samples", "0"], ["'--samples'", "greater than or equal to 1"]),
    (["analyze", "--shell-gain", "some"], ["'--shell-gain': 'some' is not one of 'hutchinson', 'directions'"]),
])
def test_a_bad_value_at_the_cli_names_the_flag_and_the_range(args, fragments):
    one_line_error(run(*args, "--quiet"), *fragments)


def test_the_python_api_keeps_its_one_line_errors():
    with pytest.raises(UserError, match="`shell_gain` must be one of hutchinson, directions, got 'some'"):
        make_config(shell_gain="some")
    with pytest.raises(UserError, match="`churn` must be a finite number >= 0, got inf"):
        make_config(churn=float("inf"))
