"""Files that hold secrets (Label Studio's admin password and token): private from creation on.

A secret is written to a fresh file, created with O_EXCL | O_NOFOLLOW and mode 0600 under a
random name in a 0700 folder, then renamed over the target. A fixed temporary name could be a
symlink someone placed beforehand (the write would follow it) or a stale file whose 0644 mode the
secret would inherit; a rename replaces a symlink at the target itself, never what it points to.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path


def private_folder(folder: Path) -> Path:
    """`folder`, created if needed, readable by its owner only."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(folder, 0o700)  # an existing folder keeps its mode through mkdir
    return folder


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path`, mode 0600, atomically, in a 0700 folder."""
    private_folder(path.parent)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(tmp, flags, 0o600)
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
