"""``--config FILE`` on analyze and guide (docs/config.md): the keys are the flags, the schema is read off the command's
options, the file's values are used, a flag overrides them, and a bad file is one line naming the file and the key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer.main

from cli_checks import FAST, one_line_error, run
from diffcrit.cli import app
from diffcrit.cli._config import REFUSED, options_schema
from diffcrit.config import AnalyzeConfig
from diffcrit.config_file import check_mapping, read_section, validator_class
from diffcrit.guidance.config import GuideConfig

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "diffcrit.yaml"
COMMANDS = {"analyze": AnalyzeConfig, "guide": GuideConfig}
SMALL = "builtin:mixture?size=8"


def command(name: str):
    return typer.main.get_command(app).commands[name]


def visible_flags(name: str) -> set[str]:
    """The long flags the command parses, hidden old names left out."""
    return {opt for param in command(name).params if not getattr(param, "hidden", False)
            for opt in param.opts if opt.startswith("--")}


@pytest.mark.parametrize("name", COMMANDS)
def test_the_keys_are_the_flags(name):
    """Every key of the schema is a flag of the command, and every flag but the refused ones is a key."""
    keys = set(options_schema(command(name))["properties"])
    assert {f"--{key}" for key in keys} == visible_flags(name) - {f"--{refused}" for refused in REFUSED}
    assert "--config" in visible_flags(name) and "config" not in keys


def as_yaml(value):
    """A default as a file would write it: a path as its text, a tuple (a repeated option's) as a list."""
    return str(value) if isinstance(value, Path) else list(value) if isinstance(value, tuple) else value


@pytest.mark.parametrize("name", COMMANDS)
def test_every_default_fits_its_key(name):
    """The schema's type, range and choices of each key accept that option's default (null where it is None)."""
    schema = options_schema(command(name))["properties"]
    params = {opt[2:]: param for param in command(name).params for opt in param.opts if opt.startswith("--")}
    refused = {key: params[key].default for key, prop in schema.items()
               if not params[key].required and not validator_class()(prop).is_valid(as_yaml(params[key].default))}
    assert refused == {}
    assert schema["steps"] == {"type": "integer", "minimum": 2, "maximum": AnalyzeConfig.__dataclass_fields__[
        "steps"].metadata["max"]}


@pytest.mark.parametrize("name", COMMANDS)
def test_the_example_sections_hold_the_defaults(name):
    """examples/diffcrit.yaml's analyze: and guide: sections validate and document the defaults, as check: does."""
    section = read_section(EXAMPLE, name)
    check_mapping(section, options_schema(command(name)), name)
    params = {opt[2:]: param for param in command(name).params for opt in param.opts if opt.startswith("--")}
    config = COMMANDS[name]
    defaults = {key: getattr(config, params[key].name) if params[key].default is None else params[key].default
                for key in section}
    assert section == defaults


def _write(tmp_path, text: str) -> Path:
    path = tmp_path / "diffcrit.yaml"
    path.write_text(text)
    return path


def test_a_file_value_is_used_and_a_flag_overrides_it(tmp_path):
    path = _write(tmp_path, f"check:\n  critical_t: 0.3\nanalyze:\n  model: {SMALL}\n  steps: 5\n  samples: 3\n"
                            "  probe-schedule: every\n  quiet: true\n")
    result = run("analyze", "--config", path, *FAST[2:], "--samples", "2")
    assert result.exit_code == 0, result.output
    config = json.loads(result.stdout)["config"]
    assert (config["steps"], config["samples"], config["probe_schedule"]) == (5, 2, "every")
    assert json.loads(result.stdout)["model"]["id"] == SMALL


def test_a_file_with_only_a_check_section_leaves_the_defaults(tmp_path):
    path = _write(tmp_path, "check:\n  critical_t: 0.3\n")
    plain = run("analyze", "--model", SMALL, *FAST)
    with_file = run("analyze", "--model", SMALL, *FAST, "--config", path)
    assert plain.exit_code == with_file.exit_code == 0, with_file.output
    assert json.loads(with_file.stdout)["config"] == json.loads(plain.stdout)["config"]


def test_guide_reads_its_own_section(tmp_path):
    """The file's model reaches guide (its folder is checked); --model overrides it (then the next check speaks)."""
    path = _write(tmp_path, f"analyze:\n  model: {SMALL}\nguide:\n  model: {tmp_path / 'missing'}\n")
    one_line_error(run("guide", "--config", path, "--quiet"), "missing", "is neither a folder")
    one_line_error(run("guide", "--config", path, "--model", "builtin:digits", "--save-guider", tmp_path / "g",
                       "--quiet"), "--save-guider writes the suggestion's guider")


@pytest.mark.parametrize("text, fragments", [
    ("analyze:\n  steps: 1\n", ["analyze: steps must be an integer in [2, 1000000], got 1"]),
    ("analyze:\n  seed: 1.5\n", ["analyze: seed must be an integer >= 0, got 1.5"]),
    ("analyze:\n  probe: magic\n", ["analyze: probe must be one of auto, jvp, fd, got 'magic'"]),
    ("analyze:\n  fd-step: .inf\n", ["analyze: fd-step must be a number >= 1e-05, got inf"]),
    ("analyze:\n  offline: maybe\n", ["analyze: offline must be true or false, got 'maybe'"]),
    ("analyze:\n  batch_size: 8\n", ["analyze: unknown key 'batch_size'", "the nearest: batch-size"]),
    ("analyze:\n  config: other.yaml\n", ["analyze: config cannot be set in a config file"]),
    ("analyze: [1, 2]\n", ["analyze: expected a mapping"]),
    ("predict:\n  steps: 4\n", ["unknown key 'predict'", "allowed: check, analyze, guide"]),
    ("analyze:\n  steps: [unclosed\n", ["is not valid YAML (line 3"]),
])
def test_a_bad_file_is_one_line_naming_the_file_and_the_key(tmp_path, text, fragments):
    path = _write(tmp_path, text)
    one_line_error(run("analyze", "--config", path, "--model", SMALL, *FAST), f"config {path}", *fragments)


def test_guide_refuses_a_value_out_of_its_choices(tmp_path):
    path = _write(tmp_path, "guide:\n  base: sometimes\n")
    one_line_error(run("guide", "--config", path, "--quiet"),
                   f"config {path}: guide: base must be one of conditional, unconditional, got 'sometimes'")
