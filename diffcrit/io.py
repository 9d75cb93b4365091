"""Output files: the one writer every output goes through, and the checks made before any work.

``atomic_write_bytes(path, data)`` writes JSON, figures, samples, states, reports and grids alike:
- a symlink is followed to its target (the link stays a link; a dangling one creates the file it names);
- a regular file or a new path is replaced atomically: a temporary file beside the target, renamed into
  place, so a reader never sees a half-written file. A new file gets the mode ``open`` gives
  (0666 less the umask: 0644 under umask 022); a replaced file keeps its mode;
- anything else (a FIFO, a character device such as /dev/null) is opened and written directly, never replaced.
An ``OSError`` (full disk, read-only folder, closed pipe) becomes one ``OutputError`` naming the path, and the
temporary file is removed.

A command's outputs (docs/design.md §9, docs/outputs.md "How every command writes its files"):
- ``check_outputs`` checks them all before any work: none is, or lies inside, one of the command's inputs (the model
  folder, a result or data it reads; symlinks followed, compared by inode, so a hard link or another spelling of the
  same folder is caught), no two share a file, and each can be written;
- ``StagedOutputs`` writes them together at the end: each to a temporary file beside its target while the command
  runs, then all renamed into place at once (SIGINT and SIGTERM held meanwhile). A failure or an interrupt before
  that point removes the temporaries: every earlier file is left as it was.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import signal
import stat
import threading
from pathlib import Path
from typing import Iterable, Iterator

from .errors import InterruptedWhileWriting, OutputError, UserError

_CHUNK = 1 << 20  # zeros written per call where the filesystem cannot fallocate
_WALK_LIMIT = 20_000  # files of an input folder compared with an existing output (hard links); a bigger tree is skipped
_HELD_SIGNALS = (signal.SIGINT, signal.SIGTERM)

Named = Iterable[tuple[str, "Path | str | None"]]  # (what the path is: an option name, the path); None is skipped


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


def check_outputs(files: Named = (), folders: Named = (), inputs: Named = ()) -> None:
    """Every output of one command, checked before any work; the first fault is one ``UserError``.

    ``files`` and ``folders`` are the outputs, ``inputs`` every path the command reads (the model folder, results,
    data, classifiers, configs); each a pair (option name, path), None skipped. In order:
    1. no output is an input or lies inside an input folder, no output folder holds an input, and no existing
       output is a hard link to a file of an input folder (``_inside``: symlinks followed, compared by inode);
    2. no two outputs are one file (``check_distinct``) and no output lies inside an output folder;
    3. each file can be created in its folder (``check_writable``), each folder created or reused.
    """
    files, folders = _given(files), _given(folders)
    inputs = [(what, path) for what, path in _given(inputs) if os.path.lexists(path)]
    for what, path in files + folders:
        _check_name(what, path)
        _check_outside_inputs(what, path, inputs, is_folder=(what, path) in folders)
    check_distinct(files + folders)
    for what, path in files + folders:
        for folder_what, folder in folders:
            if (folder_what, folder) != (what, path) and _inside(path, folder):
                raise UserError(f"{what} {path} lies inside the {folder_what} folder {folder}",
                                "give each output its own place")
    for what, path in files:
        check_writable(path, what)
    for what, path in folders:
        check_writable_dir(path, what)


def _given(pairs: Named) -> list[tuple[str, Path]]:
    return [(what, Path(path)) for what, path in pairs if path is not None]


def _check_name(what: str, path: Path) -> None:
    """A name the filesystem cannot hold (too long) is one line, not an OSError later."""
    try:
        os.stat(path)
    except FileNotFoundError:
        pass
    except OSError as err:
        if err.errno in (errno.ENAMETOOLONG, errno.ELOOP):
            raise UserError(f"cannot write {what} {_clip(path)}: {err.strerror}", "give a shorter name") from None


def _clip(path: Path, limit: int = 80) -> str:
    text = str(path)
    return text if len(text) <= limit else text[: limit // 2] + "…" + text[-limit // 2:]


def _check_outside_inputs(what: str, path: Path, inputs: list[tuple[str, Path]], is_folder: bool) -> None:
    """Step 1 of ``check_outputs`` for one output (``is_folder``: a folder output, which may not hold an input)."""
    for input_what, source in inputs:
        if _inside(path, source):
            same = _node(path) is not None and _node(path) == _node(source)
            relation = "lies inside" if not same else "is" if os.path.isdir(source) else "is the same file as"
            raise UserError(f"{what} {path} {relation} {input_what} {source}, which this command reads",
                            "write it elsewhere")
        if is_folder and _inside(source, path):
            raise UserError(f"{what} folder {path} holds {input_what} {source}, which this command reads",
                            "give a folder of its own")
        existing = _node(path)  # only an existing file can be a link to an input's file
        if existing is not None and not is_folder and os.path.isdir(source) and existing in _file_nodes(source):
            raise UserError(f"{what} {path} is a file of {input_what} {source} (a link to it), which this command "
                            "reads", "write it elsewhere")


def _node(path: Path | str) -> tuple[int, int] | None:
    """(device, inode) of what ``path`` names, symlinks followed; None when it does not exist."""
    try:
        info = os.stat(path)
    except (OSError, ValueError):
        return None
    return info.st_dev, info.st_ino


def _lineage(path: Path | str) -> Iterator[Path]:
    """``path`` with its symlinks resolved, then each folder above it."""
    resolved = resolve_output(path)
    yield resolved
    yield from resolved.parents


def _inside(path: Path | str, folder: Path | str) -> bool:
    """Whether ``path`` is ``folder`` or lies inside it, symlinks followed; by inode where ``folder`` exists (a
    hard link or another spelling of the same folder is caught), else by resolved name."""
    node = _node(folder)
    if node is None:
        named = resolve_output(folder)
        return any(part == named for part in _lineage(path))
    return any(_node(part) == node for part in _lineage(path))


def _file_nodes(folder: Path | str) -> set[tuple[int, int]]:
    """The (device, inode) of every file under ``folder`` (symlinked files followed: a hub snapshot's blobs);
    empty beyond ``_WALK_LIMIT`` files."""
    nodes: set[tuple[int, int]] = set()
    for parent, _, names in os.walk(folder):
        for name in names:
            node = _node(os.path.join(parent, name))
            if node is not None:
                nodes.add(node)
            if len(nodes) > _WALK_LIMIT:
                return set()
    return nodes


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


class StagedOutputs:
    """The files of one command, written together when it succeeds (see the module docstring).

        with StagedOutputs() as outputs:
            outputs.write_bytes(path, data)  # a temporary file beside ``path`` now: a full disk fails here
        # the with block ended without an exception: every temporary renamed onto its target

    An exception (or Ctrl-C) inside the block removes the temporaries and the folders ``folder`` created: no target is
    touched. A FIFO or device target is written in place at the commit. ``written`` lists the targets put in place.
    """

    def __init__(self) -> None:
        self._staged: list[tuple[Path, Path | None, bytes | None]] = []  # (path, temporary, in-place data)
        self._created: list[Path] = []
        self.written: list[Path] = []

    def __enter__(self) -> "StagedOutputs":
        return self

    def __exit__(self, kind, error, trace) -> None:
        if kind is None:
            self.commit()
        else:
            self.discard()

    def folder(self, path: Path | str, what: str = "output folder") -> Path:
        """Create ``path`` (and its parents) for staged files; removed again by ``discard`` if this created it."""
        path = Path(path)
        missing = [p for p in (path, *path.parents) if not p.exists()]
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise OutputError(f"cannot create {what} {path}: {err.strerror or err}") from err
        self._created.extend(missing)  # deepest first
        return path

    def write_bytes(self, path: Path | str, data: bytes) -> None:
        target = resolve_output(path)
        if is_special(target):
            self._staged.append((Path(path), None, data))
            return
        try:
            temporary = _stage(target, data)
        except OSError as err:
            raise OutputError(f"cannot write {path}: {err.strerror or err}") from err
        self._staged.append((Path(path), temporary, None))

    def write_text(self, path: Path | str, text: str) -> None:
        self.write_bytes(path, text.encode("utf-8"))

    def commit(self) -> None:
        """Rename every temporary into place (FIFOs and devices written), SIGINT and SIGTERM held meanwhile; a
        signal that came in the meantime is raised afterwards as ``InterruptedWhileWriting``."""
        with _signals_held() as pending:
            try:
                for path, temporary, data in self._staged:
                    try:
                        if temporary is None:
                            _write_in_place(resolve_output(path), data)
                        else:
                            os.replace(temporary, resolve_output(path))
                    except OSError as err:
                        raise OutputError(f"cannot write {path}: {err.strerror or err}"
                                          + _also_written(self.written)) from err
                    self.written.append(path)
            finally:
                self.discard()
        if pending:
            raise InterruptedWhileWriting(pending[0], self.written)

    def discard(self) -> None:
        """Remove what is still staged and the folders this created (if empty)."""
        for _, temporary, _ in self._staged:
            if temporary is not None:
                with contextlib.suppress(OSError):
                    os.unlink(temporary)
        self._staged = []
        for folder in self._created:
            with contextlib.suppress(OSError):
                folder.rmdir()
        self._created = []


def _also_written(written: list[Path]) -> str:
    return f" (already written: {', '.join(map(str, written))})" if written else " (nothing was written)"


@contextlib.contextmanager
def _signals_held() -> Iterator[list[int]]:
    """Hold SIGINT and SIGTERM (main thread only: Python runs handlers there); yields a list that gets the signals
    that came meanwhile. Their handlers are swapped for one that records, not masked: the operating system may
    hand a process signal to any thread (torch's included)."""
    pending: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield pending
        return
    previous = {signum: signal.getsignal(signum) for signum in _HELD_SIGNALS}
    for signum in _HELD_SIGNALS:
        signal.signal(signum, lambda number, frame: pending.append(number))
    try:
        yield pending
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)


def _stage(target: Path, data: bytes, durable: bool = True) -> Path:
    """``data`` in a new temporary file beside ``target`` (with ``target``'s mode if it exists, fsynced if
    ``durable``); removed on failure."""
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
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return tmp


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
    tmp = _stage(target, data, durable)
    try:
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
