"""Small file helpers: atomic writes and early writability checks (nothing half-written)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .errors import UserError


def check_writable(path: Path | str, what: str = "output") -> Path:
    """Fail early (before any sampling) when ``path`` cannot be written."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise UserError(f"{what} path {path} is a directory", "give a file name")
    if not parent.exists():
        raise UserError(f"cannot write {what} {path}: folder {parent} does not exist", "create it first")
    if not os.access(parent, os.W_OK):
        raise UserError(f"cannot write {what} {path}: folder {parent} is not writable")
    return path


def atomic_write_bytes(path: Path | str, data: bytes, durable: bool = True) -> None:
    """Write to a temporary file beside ``path`` and rename it into place.

    The rename means a reader never sees a half-written file, even after a crash or Ctrl-C;
    ``durable`` also fsyncs, which only matters if the operating system itself crashes.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: Path | str, text: str, durable: bool = True) -> None:
    atomic_write_bytes(path, text.encode("utf-8"), durable)


def read_text(path: Path | str, role: str) -> str:
    """A UTF-8 text file the user named (``role``: what it is, for the message); a missing,
    unreadable or binary file is a user error."""
    path = Path(path)
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{role} {path} does not exist") from None
    except IsADirectoryError:
        raise UserError(f"{role} {path} is a directory", "give a file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"cannot read {role} {path}: {err}") from None
