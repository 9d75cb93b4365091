"""The command line around the commands: --version, no arguments, completion, `models`, SIGTERM,
start-up without torch."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from io import StringIO
from pathlib import Path

import pytest
from rich.console import Console

import diffcrit
from diffcrit.models.builtins import DEFAULT_MODEL, entries
from cli_checks import run
from result_factory import make_analyze_result

ROOT = Path(__file__).resolve().parents[1]


def test_version_prints_the_package_version_on_stdout():
    result = run("--version")
    assert result.exit_code == 0, result.output
    assert result.stdout == f"diffcrit {diffcrit.__version__}\n" and result.stderr == ""


def test_the_version_has_one_source():
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "diffcrit.__version__"}


def test_the_license_and_py_typed_ship():
    tomllib = pytest.importorskip("tomllib")
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert pyproject["project"]["license"] == "MIT" and pyproject["project"]["license-files"] == ["LICENSE"]
    assert (ROOT / "LICENSE").read_text().startswith("MIT License") and (ROOT / "diffcrit" / "py.typed").exists()
    assert "py.typed" in pyproject["tool"]["setuptools"]["package-data"]["diffcrit"]


def test_no_arguments_prints_help_on_stdout_and_exits_2():
    """click's convention for a group called without a command (a usage error), pinned."""
    result = run()
    assert result.exit_code == 2
    assert "Usage:" in result.stdout and "analyze" in result.stdout and "--version" in result.stdout
    assert "--install-completion" in result.stdout and "--show-completion" in result.stdout


def test_shell_completion_completes_command_names(monkeypatch):
    """Typer's completion: the script for a shell, and the completions it asks the program for."""
    import typer.completion

    # --show-completion is a flag that detects the shell from the process tree: none under a detached job
    monkeypatch.setattr(typer.completion, "_get_shell_name", lambda: "bash")
    script = run("--show-completion", prog_name="diffcrit")
    assert script.exit_code == 0 and "_DIFFCRIT_COMPLETE=complete_bash" in script.stdout
    env = {"_DIFFCRIT_COMPLETE": "complete_bash", "COMP_WORDS": "diffcrit pl", "COMP_CWORD": "1"}
    completed = run(prog_name="diffcrit", env=env)
    assert completed.exit_code == 0 and completed.stdout.split() == ["plot"]


def test_models_listing_is_data_on_stdout():
    result = run("models")
    assert result.exit_code == 0, result.output
    assert "builtin:mixture" in result.stdout and "builtin:gaussian" in result.stdout
    assert result.stderr == ""


def test_models_json_lists_names_descriptions_and_parameters():
    result = run("models", "--json")
    assert result.exit_code == 0, result.output
    listing = json.loads(result.stdout)
    assert [m["name"] for m in listing] == [f"builtin:{e.name}" for e in entries()]
    by_name = {m["name"]: m for m in listing}
    mixture = by_name["builtin:mixture"]
    assert set(mixture) >= {"name", "kind", "description", "conditioning", "parameters", "default"}
    assert mixture["parameters"] == {"size": 32, "channels": 1, "m2": 16.0, "noise": 0.0}
    assert mixture["kind"] == "analytic"
    assert by_name[DEFAULT_MODEL]["default"] is True and sum(m["default"] for m in listing) == 1
    assert all(m["description"] for m in listing)


def test_models_table_reads_at_80_columns():
    """Non-TTY (CI logs) at 80 columns: no line too long, no word of a cell broken or cut."""
    from diffcrit.cli.models import render_models

    buffer = StringIO()
    render_models(Console(file=buffer, width=80, force_terminal=False), entries())
    text = buffer.getvalue()
    assert "…" not in text and max(len(line) for line in text.splitlines()) <= 80
    words = {w.strip(",;") for w in text.split()}
    for entry in entries():
        cells = [f"builtin:{entry.name}", entry.kind, entry.summary, entry.conditioning,
                 ", ".join(f"{k}={v}" for k, v in entry.options().items())]
        missing = [w for cell in cells for w in cell.split() if w.strip(",;") not in words]
        assert not missing, (missing, text)


def test_sigterm_is_an_interrupt_with_a_note_and_exit_143(tmp_path):
    """SIGTERM (a scheduler, a CI timeout, `kill`) ends like Ctrl-C: a note, no result, exit 128 + 15."""
    out, states, scratch = tmp_path / "r.json", tmp_path / "states", tmp_path / "tmp"
    scratch.mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "TMPDIR": str(scratch)}
    command = [sys.executable, "-m", "diffcrit", "analyze", "--model", "builtin:gaussian?size=8", "--steps", "100000",
               "--samples", "2", "--bootstrap", "0", "--out", str(out), "--save-states", str(states)]
    process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    try:
        deadline = time.monotonic() + 120
        while not list(states.glob("step_*.safetensors")):  # sampling has started
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "analyze did not start within 120 s"
            time.sleep(0.1)
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 128 + signal.SIGTERM, stderr
    assert [line for line in stderr.splitlines() if line.strip()] == [
        f"terminated: no result written; kept the steps streamed to --save-states {states}"], stderr
    assert stdout == "" and not out.exists() and not list(tmp_path.glob(".r.json*")) and not list(scratch.iterdir())


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_sigterm_handler_raises_an_interrupt():
    from diffcrit.cli._app import Terminated, handle_sigterm

    previous = signal.getsignal(signal.SIGTERM)
    try:
        handle_sigterm()
        with pytest.raises(KeyboardInterrupt) as caught:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)
        assert isinstance(caught.value, Terminated)
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # a second SIGTERM ends the process at once
    finally:
        signal.signal(signal.SIGTERM, previous)


TORCH_FREE = """
import json, sys
from typer.testing import CliRunner
import diffcrit
from diffcrit.cli import app
baseline, candidate, figure = sys.argv[1:]
codes = [CliRunner().invoke(app, args).exit_code for args in
         (["--help"], ["check", candidate, "--baseline", baseline], ["plot", candidate, "-o", figure])]
heavy = [name for name in ("torch", "diffusers", "transformers", "accelerate") if name in sys.modules]
from diffcrit.analysis.engine import analyze
from diffcrit.report.document import Result
public = diffcrit.analyze is analyze and diffcrit.Result is Result and {"analyze", "guide"} <= set(dir(diffcrit))
print(json.dumps({"codes": codes, "heavy": heavy, "public": public}))
"""


def test_help_check_and_plot_do_not_import_torch(tmp_path):
    """`import diffcrit` and the commands that only read documents start without torch or diffusers; the
    public names (`diffcrit.analyze`, ...) load on first use (PEP 562). A fresh interpreter: sys.modules is clean."""
    baseline, candidate, figure = tmp_path / "baseline.json", tmp_path / "candidate.json", tmp_path / "x.png"
    baseline.write_text(json.dumps(make_analyze_result(1.5)))
    candidate.write_text(json.dumps(make_analyze_result(1.5)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", TORCH_FREE, str(baseline), str(candidate), str(figure)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.splitlines()[-1])
    assert report == {"codes": [0, 0, 0], "heavy": [], "public": True}, report
    assert figure.stat().st_size > 0


def test_the_runtime_never_imports_training():
    """Training may import the runtime, not the other way round: no module outside diffcrit/training
    imports it (absolute or relative), at the top or inside a function."""
    import ast

    package = ROOT / "diffcrit"
    offenders = []
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package).parts
        if parts[0] == "training":
            continue
        owner = ["diffcrit", *parts[:-1]]  # the package a relative import starts from
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom):
                anchor = owner[: len(owner) - node.level + 1] if node.level else []
                target = ".".join([*anchor, *filter(None, [node.module])])
                names = [target] + [f"{target}.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            if any(name == "diffcrit.training" or name.startswith("diffcrit.training.") for name in names):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert offenders == []


def test_written_lines_list_files_and_sum_up_a_folder_of_many():
    """One "wrote" line per output, but a folder that received more than LISTED_PER_FOLDER files (guide's per-sample
    PNGs: thousands) is one line, where its first file was."""
    from diffcrit.cli._app import LISTED_PER_FOLDER, written_lines

    pngs = [Path("imgs/critical") / f"{seed:06d}.png" for seed in range(LISTED_PER_FOLDER + 1)]
    few = [Path("imgs/none") / f"{seed:06d}.png" for seed in range(2)]
    lines = written_lines([Path("imgs/critical.png"), *pngs, *few, Path("g.json")])
    assert lines == ["wrote imgs/critical.png", f"wrote {LISTED_PER_FOLDER + 1} files into imgs/critical",
                     "wrote imgs/none/000000.png", "wrote imgs/none/000001.png", "wrote g.json"]
    assert written_lines(pngs[:LISTED_PER_FOLDER]) == [f"wrote {p}" for p in pngs[:LISTED_PER_FOLDER]]
