"""Output files: the one writer every output goes through, and the checks made before any work.

``atomic_write_bytes(path, data)`` writes JSON, figures, samples, states, reports and grids alike:
- a symlink is followed to its target (the link stays a link; a dangling one creates the file it names);
- a regular file or a new path is replaced atomically: a temporary file beside the target, renamed into
  place, so a reader never sees a half-written file. A new file gets the mode ``open`` gives
  (0666 less the umask: 0644 under umask 022); a replaced file keeps its mode;
- anything else (a FIFO, a character device such as /dev/null) is opened and written directly, never replaced.
An ``OSError`` (full disk, read-only folder, closed pipe) becomes one ``OutputError`` naming the path, and the
temporary file is removed.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from pathlib import Path
from typing import Iterable

from .errors import OutputError, UserError

_CHUNK = 1 << 20  # zeros written per call where the filesystem cannot fallocate


def resolve_output(path: Path | str) -> Path:
    """The file ``path`` writes: symlinks followed (a dangling link gives the file it names)."""
    return Path(os.path.realpath(path))


def is_special(path: Path | str) -> bool:
    """Whether ``path`` exists and is neither a regular file nor a folder (a FIFO, a device): written in place."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def check_writable(path: Path | str, what: str = "output") -> Path:
    """Fail early (before any sampling) when ``path`` cannot be written."""
    path = Path(path)
    target = resolve_output(path)
    if target.is_dir():
        raise UserError(f"{what} path {path} is a directory", "give a file name")
    if is_special(target):
        if not os.access(target, os.W_OK):
            raise UserError(f"cannot write {what} {path}: it is not writable")
        return path
    parent = target.parent if path.is_symlink() else (path.parent if str(path.parent) else Path("."))
    if not parent.exists():
        raise UserError(f"cannot write {what} {path}: folder {parent} does not exist", "create it first")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"cannot write {what} {path}: folder {parent} is not writable")
    return path


def check_writable_dir(folder: Path | str, what: str = "output folder") -> Path:
    """Fail early when files cannot be created in ``folder`` (or, if it does not exist yet, in its nearest
    existing parent, where it would be created)."""
    folder = Path(folder)
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"cannot write {what} {folder}: {existing} is not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"cannot write {what} {folder}: {existing} is not writable")
    return folder


def check_distinct(outputs: Iterable[tuple[str, Path | str | None]],
                   inputs: Iterable[tuple[str, Path | str | None]] = ()) -> None:
    """Refuse two outputs of one command, or an output and an input, that are the same file (before any work).

    Pairs are (option name, path); None is skipped. Links are followed and hard links compared by inode.
    A character device (/dev/null) takes any number of outputs.
    """
    seen = [(what, path, _identity(path)) for what, path in inputs if path is not None]
    for what, path in outputs:
        if path is None:
            continue
        key = _identity(path)
        if key is None:
            continue
        for other_what, other_path, other_key in seen:
            if key == other_key:
                raise UserError(f"{what} {path} is the same file as {other_what} {other_path}",
                                "give each output its own file")
        seen.append((what, path, key))


def _identity(path: Path | str) -> tuple | None:
    """What makes two paths one file: (device, inode) if it exists, else its resolved path; None for a
    character device."""
    try:
        info = os.stat(path)
    except OSError:
        return ("path", str(resolve_output(path)))
    return None if stat.S_ISCHR(info.st_mode) else ("inode", info.st_dev, info.st_ino)


def atomic_write_bytes(path: Path | str, data: bytes, durable: bool = True) -> None:
    """Write ``data`` to ``path`` (see the module docstring); ``OutputError`` on any OS failure.

    ``durable`` also fsyncs a replaced file, which only matters if the operating system itself crashes.
    """
    target = resolve_output(path)
    try:
        if is_special(target):
            _write_in_place(target, data)
        else:
            _replace(target, data, durable)
    except OSError as err:
        raise OutputError(f"cannot write {path}: {err.strerror or err}") from err


def atomic_write_text(path: Path | str, text: str, durable: bool = True) -> None:
    atomic_write_bytes(path, text.encode("utf-8"), durable)


def preallocate(fd: int, offset: int, length: int) -> None:
    """Reserve ``length`` bytes from ``offset`` of the open file ``fd`` on disk for real, so that a full
    disk fails here with ENOSPC rather than later, inside a memory map, as SIGBUS.

    ``posix_fallocate`` where the filesystem supports it, else zeros written chunk-wise (the file offset is
    restored)."""
    try:
        os.posix_fallocate(fd, offset, length)
        return
    except AttributeError:
        pass  # no posix_fallocate on this platform
    except OSError as err:
        if err.errno not in (errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS, errno.EINVAL):
            raise
    position = os.lseek(fd, 0, os.SEEK_CUR)
    try:
        os.lseek(fd, offset, os.SEEK_SET)
        zeros = bytes(min(_CHUNK, length))
        remaining = length
        while remaining:
            remaining -= os.write(fd, zeros[:min(len(zeros), remaining)])
    finally:
        os.lseek(fd, position, os.SEEK_SET)


def _replace(target: Path, data: bytes, durable: bool) -> None:
    """Temporary file beside ``target``, then rename; the temporary file is removed on any failure."""
    try:
        kept_mode = stat.S_IMODE(os.stat(target).st_mode)
    except FileNotFoundError:
        kept_mode = None
    fd, tmp = _create_temporary(target)
    try:
        try:
            if kept_mode is not None:
                os.fchmod(fd, kept_mode)
            _write_all(fd, data)
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)  # some filesystems (NFS) report a full disk only here
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _create_temporary(target: Path) -> tuple[int, Path]:
    """A new file ``.NAME.RANDOM.tmp`` beside ``target``, mode 0666 less the umask (as ``open`` creates)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = target.parent / f".{target.name}.{secrets.token_hex(4)}.tmp"
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temporary file name", str(target.parent))


def _write_in_place(target: Path, data: bytes) -> None:
    """A FIFO or a device: open it for writing (a FIFO waits for its reader) and write everything."""
    fd = os.open(target, os.O_WRONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        _write_all(fd, data)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


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
