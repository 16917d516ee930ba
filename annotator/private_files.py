"""Files that hold secrets (a study's key, Label Studio's admin password and token): private from
creation on, and read only when they are what we wrote.

A secret is written to a fresh file, created with O_EXCL | O_NOFOLLOW and mode 0600 under a
random name in a 0700 folder, then renamed over the target. A fixed temporary name could be a
symlink someone placed beforehand (the write would follow it) or a stale file whose 0644 mode the
secret would inherit.

Reading is as strict as writing: a link at a secret's path (someone else's key or login
planted there, which the study would then use) or a file owned by another user is refused,
checked on the open handle (O_NOFOLLOW, then fstat), so nothing can be swapped in between. The
target of a write is checked the same way, so a planted link is refused rather than replaced.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from pathlib import Path

from annotator.errors import AnnotatorError

_NOFOLLOW = os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


class PrivateFileError(AnnotatorError):
    """A secret's file or folder is a link, not ours, or not a regular file."""


def _refuse_foreign(path: Path, st: os.stat_result, what: str) -> None:
    if stat.S_ISLNK(st.st_mode):
        raise PrivateFileError(
            f"{path} is a link (to {os.readlink(path)}): a {what} is never read or written "
            "through a link; remove it"
        )
    if st.st_uid != os.geteuid():
        raise PrivateFileError(
            f"{path} belongs to another user (uid {st.st_uid}): a {what} must be your own; "
            "remove it"
        )


def private_folder(folder: Path) -> Path:
    """`folder`, created if needed, readable by its owner only; a link or another user's
    folder there is refused (chmod would follow a link to wherever it leads)."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    _refuse_foreign(folder, folder.lstat(), "folder of secrets")
    os.chmod(folder, 0o700)  # an existing folder keeps its mode (a link was refused above)
    return folder


def read_private(path: Path, what: str = "secret") -> str | None:
    """The text of `path`, None if there is none; `PrivateFileError` for a link, a file of
    another user or one that is not a regular file."""
    try:
        fd = os.open(path, os.O_RDONLY | _NOFOLLOW)
    except FileNotFoundError:
        return None
    except OSError as exc:
        with contextlib.suppress(OSError):
            _refuse_foreign(path, path.lstat(), what)  # ELOOP: a link, named as such
        raise PrivateFileError(f"{path}: cannot read the {what} ({exc.strerror})") from None
    with os.fdopen(fd, "rb") as handle:
        st = os.fstat(handle.fileno())
        _refuse_foreign(path, st, what)
        if not stat.S_ISREG(st.st_mode):
            raise PrivateFileError(f"{path} is not a regular file: a {what} is a file")
        return handle.read().decode("utf-8", errors="replace")


def check_writable(path: Path, what: str = "secret") -> None:
    """Refuse to write over a link or another user's file at `path` (nothing there is fine)."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        return
    _refuse_foreign(path, st, what)


def write_private(path: Path, text: str, what: str = "secret") -> None:
    """Write `text` to `path`, mode 0600, atomically, in a 0700 folder."""
    private_folder(path.parent)
    check_writable(path, what)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
