"""The one way trailscan creates files and folders on disk.

What trailscan writes (the store, reports, downloaded log files) is an account's activity:
by default only its owner may read it (files ``0600``, folders ``0700``).  Files are never
opened by a name someone else could have planted: each is written to a new temporary
file created exclusively in the target folder (``O_CREAT | O_EXCL``, which refuses an
existing name — a symlink included), then renamed over the final name, which replaces a
planted link instead of following it.  A folder that is a symlink is refused.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

from trailscan.errors import InputError

__all__ = ["DIR_MODE", "FILE_MODE", "dir_mode_for", "make_dir", "private_temp_dir", "replace_dir", "write_file"]

FILE_MODE = 0o600
DIR_MODE = 0o700


def dir_mode_for(file_mode: int) -> int:
    """The folder mode that goes with a file mode: search wherever read is allowed."""
    return file_mode | ((file_mode & 0o444) >> 2)


def make_dir(path: str | os.PathLike[str], mode: int = DIR_MODE) -> Path:
    """*path* as a folder (parents created as needed), never through a symlink; a folder
    created here gets *mode*."""
    folder = Path(path)
    if folder.is_symlink():
        raise InputError(f"{folder}: is a symbolic link, not a folder; trailscan writes only into real folders")
    if folder.exists():
        if not folder.is_dir():
            raise InputError(f"{folder}: exists and is not a folder")
        return folder
    make_dir(folder.parent, mode)
    try:
        os.mkdir(folder, mode)
    except FileExistsError:
        return make_dir(folder, mode)
    os.chmod(folder, mode)  # mkdir's mode is filtered by the umask
    return folder


def write_file(path: str | os.PathLike[str], content: bytes | Callable[[IO[bytes]], None], mode: int = FILE_MODE) -> Path:
    """Write *content* (bytes, or a function writing to the open file) to *path* with *mode*,
    atomically: readers see the old file or the new one, never a part."""
    target = Path(path)
    folder = make_dir(target.parent, dir_mode_for(mode))
    descriptor, temporary = tempfile.mkstemp(dir=folder, prefix=f".{target.name}.", suffix=".partial")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            if callable(content):
                content(handle)
            else:
                handle.write(content)
            os.fchmod(handle.fileno(), mode)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return target


def private_temp_dir(parent: str | os.PathLike[str] | None = None, prefix: str = "trailscan-") -> Path:
    """A new folder only its owner can use (``mkdtemp``: created exclusively, ``0700``)."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir=parent))


def replace_dir(new: Path, target: Path) -> None:
    """Put the complete folder *new* in place of *target* (a folder, a planted link, or
    nothing): renames only, so *target* is never seen half written."""
    old = None
    if target.is_symlink() or target.exists():
        old = target.parent / f".{target.name}.old-{os.getpid()}-{new.name[-8:]}"
        os.rename(target, old)
    try:
        os.rename(new, target)
    except BaseException:
        if old is not None:
            os.rename(old, target)
        raise
    if old is not None:
        if old.is_symlink() or not old.is_dir():
            old.unlink()
        else:
            shutil.rmtree(old)
