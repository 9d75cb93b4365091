"""The Typer application and what every command shares: error mapping, output, console.

Contract (docs/design.md §9): data on stdout or ``--out FILE``; progress and logs on stderr.
Exit 0 ok, 1 a check failed, 2 bad input or an output that cannot be written (full disk, read-only
folder, closed pipe): one clear line, no traceback, nothing half-written; interrupted: 130 (Ctrl-C,
SIGINT) or 143 (SIGTERM), 128 + the signal number as shells report it, with a note saying what was written.
Every output is checked before the work (``io.check_outputs``) and all are written together at the end
(``command_outputs``): a failure or an interrupt leaves every earlier file as it was.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import os
import re
import signal
import sys
import warnings
from pathlib import Path
from typing import Annotated, Any, Callable, Iterator

import typer
from rich.console import Console
from typer.core import TyperGroup

try:  # typer >= 0.22 carries its own copy of click
    from typer._click import exceptions as click_errors
    from typer._click.globals import get_current_context
except ImportError:  # pragma: no cover - older typer on click
    from click import exceptions as click_errors
    from click.globals import get_current_context

from .. import __version__
from ..errors import PARAMETER, DiffcritWarning, InterruptedWhileWriting, OutputError, UserError, shorten
from ..io import StagedOutputs
from ..report.document import write_document

EXIT_OK, EXIT_CHECK_FAILED, EXIT_BAD_INPUT = 0, 1, 2


class OneLineErrors(TyperGroup):
    """The command group: a parser error (unknown option, a value that is not a number, a missing argument) is the
    tool's one ``error:`` line and exit 2, as every other bad input, not click's usage box."""

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)
        except click_errors.NoArgsIsHelpError:
            sys.exit(EXIT_BAD_INPUT)  # `diffcrit` alone: the help is printed, exit 2 as click does
        except click_errors.ClickException as err:
            command = getattr(getattr(err, "ctx", None), "command_path", "diffcrit")
            _print_error(parser_message(err), f"see {command} --help")
            sys.exit(EXIT_BAD_INPUT if isinstance(err, click_errors.UsageError) else err.exit_code)
        except typer.Abort:
            sys.exit(130)
        sys.exit(code if isinstance(code, int) else EXIT_OK)

    def get_command(self, ctx: Any, name: str) -> Any:
        command = super().get_command(ctx, name)
        if command is not None:
            _plain_help(command)
        return command

    def get_params(self, ctx: Any) -> list:
        return [_plain_type_column(param) for param in super().get_params(ctx)]


def _plain_help(command: Any) -> None:
    """Every option of ``command``, and its --help, with the plain type column; its docstring's paragraphs
    reflowed to the terminal, not broken where the source lines end (once per command)."""
    if getattr(command, "plain_help", False):
        return
    if command.help:
        command.help = "\n\n".join(" ".join(part.split()) for part in inspect.cleandoc(command.help).split("\n\n"))
    for param in command.params:
        _plain_type_column(param)
    own_help = command.get_help_option
    command.get_help_option = lambda ctx: _plain_type_column(own_help(ctx))
    command.plain_help = True


def _plain_type_column(param: Any) -> Any:
    """--help's type column without Python's spelling: nothing for a flag (not ``<bool>``), ``<path>...`` for a
    list (not ``<list[Path]>``). -> ``param``."""
    shown = getattr(param, "display_type_rich", None)
    if shown is None or getattr(shown, "plain", False):
        return param

    def plain(ctx: Any) -> str | None:
        if getattr(param, "is_flag", False):
            return None
        label = shown(ctx)
        return None if label is None else _LIST_TYPE.sub(lambda m: f"<{m.group(1).lower()}>...", label)

    plain.plain = True  # type: ignore[attr-defined]
    param.display_type_rich = plain
    return param


_LIST_TYPE = re.compile(r"<list\[(\w+)\]>")


def parser_message(err: click_errors.ClickException) -> str:
    """click's message on one line, starting lower-case as diffcrit's own (without pydantic's "Value error, ", which
    typer's coercion puts before a choice's message)."""
    text = " ".join(err.format_message().split()).rstrip(".").replace(": Value error, ", ": ")
    return text[:1].lower() + text[1:] if text[:2] != text[:2].upper() else text


app = typer.Typer(
    name="diffcrit",
    cls=OneLineErrors,
    help="Measure when a diffusion model decides what it draws: mode stiffness, correlation "
    "length and the critical time of the generative phase transition.",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion (bash, zsh, fish, PowerShell)
    pretty_exceptions_enable=False,
)

# Everything for humans goes to stderr; stdout carries data only (JSON, the `models` listing).
console = Console(stderr=True)
data_console = Console()

def _print_version(value: bool) -> None:
    if value:
        sys.stdout.write(f"diffcrit {__version__}\n")
        raise typer.Exit(EXIT_OK)


@app.callback()
def _root(version: Annotated[bool, typer.Option(
        "--version", callback=_print_version, is_eager=True, help="Print the version and exit.")] = False) -> None:
    pass


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the process is so that it unwinds like Ctrl-C (cleanup, note, no result)."""

    signum = signal.SIGTERM


def _raise_terminated(signum: int, frame: Any) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends the process at once
    raise Terminated()


def handle_sigterm() -> None:
    """Turn SIGTERM into ``Terminated`` (a ``KeyboardInterrupt``); the entry point calls this once."""
    signal.signal(signal.SIGTERM, _raise_terminated)


def fail(message: str, hint: str | None = None) -> None:
    """Print one line on stderr and exit 2 (bad input)."""
    _print_error(message, hint)
    raise typer.Exit(EXIT_BAD_INPUT)


def _print_error(message: str, hint: str | None = None) -> None:
    line = f"error: {message}" + (f" — {hint}" if hint else "")
    console.print(line, style="bold red", markup=False, highlight=False, soft_wrap=True)


def _print_warning(text: Any) -> None:
    console.print(f"warning: {text}", style="yellow", markup=False, highlight=False, soft_wrap=True)


# Library parameters that a command takes under another name: library name -> the command's parameter.
CLI_NAMES = {"save_samples_to": "save_samples"}


def command_flags() -> dict[str, str]:
    """Each parameter of the running command, by its Python name, -> its long flag (``batch_size`` ->
    ``--batch-size``; ``CLI_NAMES`` too); empty outside a command."""
    ctx = get_current_context(silent=True)
    params = ctx.command.params if ctx is not None else ()
    options = [param for param in params  # not the arguments, nor the hidden old names (guide --scale)
               if param.opts and param.opts[0].startswith("-") and not getattr(param, "hidden", False)]
    flags = {param.name: next((opt for opt in param.opts if opt.startswith("--")), param.opts[0]) for param in options}
    return {**{name: flags[cli] for name, cli in CLI_NAMES.items() if cli in flags}, **flags}


def render_parameters(text: str, flags: dict[str, str]) -> str:
    """A library message with each parameter it names in backticks (errors.PARAMETER) written as the command's flag;
    a name the command has no flag for stays as it is."""
    return PARAMETER.sub(lambda m: flags.get(m.group(1), m.group(0)), text)


@contextlib.contextmanager
def _library_warnings(quiet: bool) -> Iterator[None]:
    """diffcrit's own warnings (``DiffcritWarning``) as one "warning:" line each at once (above a progress bar).
    Every other warning (``LibraryWarning``: what diffusers and transformers logged; torch's own) is collected and
    shown once, as a "warning:" line, after the command; not when it ends in an error line or an interrupt note
    (that one line says what went wrong), never under --quiet."""
    seen: dict[str, None] = {}

    def collect(message, category, filename, lineno, file=None, line=None) -> None:
        if issubclass(category, DiffcritWarning):
            _print_warning(render_parameters(str(message), command_flags()))
        else:
            seen.setdefault(shorten(str(message)), None)

    with warnings.catch_warnings():
        warnings.simplefilter("always", DiffcritWarning)  # each is rare and says something new
        warnings.showwarning = collect
        try:
            yield
        except (UserError, KeyboardInterrupt):
            seen.clear()
            raise
        finally:
            for text in () if quiet else seen:
                _print_warning(text)


class _StatusLines(logging.Handler):
    """The library's status log (logger "diffcrit", INFO: e.g. the hub being contacted) as dim stderr lines."""

    def emit(self, record: logging.LogRecord) -> None:
        console.print(record.getMessage(), style="dim", markup=False, highlight=False, soft_wrap=True)


@contextlib.contextmanager
def _status_lines(quiet: bool) -> Iterator[None]:
    logger, handler = logging.getLogger("diffcrit"), _StatusLines()
    level, propagate = logger.level, logger.propagate
    if not quiet:
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate


def user_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Map ``UserError`` to one stderr line and exit 2; Ctrl-C to exit 130 and SIGTERM to 143, with a note."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            quiet = bool(kwargs.get("quiet"))
            with _library_warnings(quiet), _status_lines(quiet):
                return command(*args, **kwargs)
        except UserError as err:
            flags = command_flags()
            fail(render_parameters(err.message, flags), err.hint and render_parameters(err.hint, flags))
        except KeyboardInterrupt as interrupt:
            signum = getattr(interrupt, "signum", signal.SIGINT)
            what = "terminated" if signum == signal.SIGTERM else "interrupted"
            console.print(f"{what}: {interrupted_note(interrupt)}", style="yellow", markup=False, highlight=False,
                          soft_wrap=True)
            raise typer.Exit(128 + signum) from None

    return wrapper


def interrupted_note(interrupt: KeyboardInterrupt) -> str:
    """What an interrupt left behind, truly: nothing, every output (it came while they were put in place), or
    what a command streams while it runs (``kept``: --save-states)."""
    if isinstance(interrupt, InterruptedWhileWriting):
        return "stopped after writing " + (", ".join(map(str, interrupt.written)) or "the results")
    kept = getattr(interrupt, "kept", None)
    return "no result written" + (f"; kept {kept}" if kept else "")


# A folder that received more files than this gets one "wrote N files into DIR" line (per-sample PNGs: thousands).
LISTED_PER_FOLDER = 8


@contextlib.contextmanager
def command_outputs(quiet: bool = False) -> Iterator[StagedOutputs]:
    """The files of a command, staged in the block and written together at its end (``io.StagedOutputs``);
    then, unless ``quiet``, a "wrote PATH" line each (``written_lines``)."""
    with StagedOutputs() as outputs:
        yield outputs
    if not quiet:
        for line in written_lines(outputs.written):
            console.print(line, style="dim", markup=False, highlight=False)


def written_lines(paths: list[Path]) -> list[str]:
    """"wrote PATH" per file, in order, except that the files of a folder holding more than ``LISTED_PER_FOLDER`` of
    them are one "wrote N files into FOLDER" line, where its first file was."""
    by_folder: dict[Path, int] = {}
    for path in paths:
        by_folder[Path(path).parent] = by_folder.get(Path(path).parent, 0) + 1
    lines, said = [], set()
    for path in paths:
        folder = Path(path).parent
        if by_folder[folder] <= LISTED_PER_FOLDER:
            lines.append(f"wrote {path}")
        elif folder not in said:
            said.add(folder)
            lines.append(f"wrote {by_folder[folder]} files into {folder}")
    return lines


def emit_json(document: dict, out: Path | None, outputs: StagedOutputs) -> None:
    """Stage ``document`` for ``out`` among the command's ``outputs``, or write it to stdout when ``out`` is None
    (after the files are staged, before they are put in place: a closed pipe leaves them as they were)."""
    if out is None:
        write_stdout(write_document(document))
    else:
        outputs.write_text(out, write_document(document))


def write_stdout(text: str) -> None:
    """Data on stdout; a full disk or a closed pipe is an ``OutputError`` (one line), not a traceback."""
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except OSError as err:
        _stdout_to_devnull()
        raise OutputError(f"cannot write to stdout: {err.strerror or err}") from None


def _stdout_to_devnull() -> None:
    """After a failed write, point file descriptor 1 at /dev/null: the interpreter's last flush of the
    unwritten rest then succeeds instead of printing a second error at exit."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return  # not a real file (e.g. a test runner's buffer)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)
