"""User-facing errors.

A ``UserError`` is a mistake the user can fix (bad option, missing folder, unsupported model):
the CLI prints its one-line message and exits 2. Anything else is a bug and keeps its traceback.
Library code raises these; it never prints or exits.

Library messages (errors and warnings) name a parameter as a Python caller passes it, in backticks:
"`batch_size` must be an integer >= 1, got 0". The CLI writes each such name as its command's flag
(``--batch-size``; cli/_app.py ``render_parameters``); a Python caller never reads a flag.
"""

from __future__ import annotations

import re


# A parameter named in a message or hint: its Python name in backticks (`batch_size`).
PARAMETER = re.compile(r"`([A-Za-z_]\w*)`")


class UserError(ValueError):
    """A bad input: ``message`` says what was wrong and what is allowed; ``hint`` what to try next; ``option`` the
    parameter at fault, by its Python name (``"batch_size"``), where one is. Both texts name parameters in
    backticks (``PARAMETER``)."""

    def __init__(self, message: str, hint: str | None = None, *, option: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.option = option

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} ({self.hint})"


class ConditioningError(UserError):
    """The model takes another kind of conditioning than the one given (class labels vs a prompt vs none)."""


class DiffcritWarning(UserWarning):
    """Something the user should know that changes no result (e.g. forwards split after running out of GPU
    memory); the CLI prints it as one "warning:" line."""


class LibraryWarning(UserWarning):
    """What diffusers or transformers logged as a warning while diffcrit loaded a model (``loading.library_logs``);
    the CLI shows each once as a "warning:" line, after a command that succeeds, and never under --quiet."""


class ModelOutputError(UserError):
    """The model produced NaN or Inf; the message names the step."""


class OutputError(UserError):
    """An output could not be written (full disk, read-only folder, closed pipe): names the path and the reason.

    ``__cause__`` holds the ``OSError``; nothing half-written is left behind (diffcrit/io.py).
    """


class InterruptedWhileWriting(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM) that came while a command's finished outputs were put in place: they were written
    (``written``), then the command stops as interrupted (diffcrit/io.py ``StagedOutputs``)."""

    def __init__(self, signum: int, written: list):
        super().__init__(signum)
        self.signum = signum
        self.written = written


_SENTENCE_END = re.compile(r"[.!?](?=\s)")


def shorten(text: str, limit: int = 160) -> str:
    """The first line of ``text`` (another library's message) in at most ``limit`` characters.

    A longer line is cut after its last whole sentence that fits, when that keeps at least half of
    ``limit``, else after its last whole word, and ends with "…"; a single word longer than ``limit``
    is cut hard.
    """
    stripped = text.strip()
    line = stripped.splitlines()[0].strip() if stripped else ""
    if len(line) <= limit:
        return line
    room = line[: limit - 1]  # one character for the ellipsis
    sentence_ends = [m.end() for m in _SENTENCE_END.finditer(room) if m.end() <= limit - 2]  # room for " …"
    if sentence_ends and sentence_ends[-1] >= limit // 2:
        return line[: sentence_ends[-1]] + " …"
    if line[limit - 1].isspace():  # the cut falls between two words
        return room.rstrip() + "…"
    word_start = room.rfind(" ")
    if word_start <= 0:
        return room + "…"
    return room[:word_start].rstrip(" ,;:") + "…"
