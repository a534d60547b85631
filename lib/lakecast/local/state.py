"""Private local state: the folders and files under ``.state/`` that only their owner may touch.

The state folder holds pid files, logs and the Spark cluster's shared secret. Folders are made
0700 (and tightened when they exist wider); files are written through a fresh temporary file
that ``mkstemp`` opens with O_CREAT|O_EXCL|O_NOFOLLOW, mode 0600, in the same folder, then
renamed over the target. A symlink planted at a predictable name is never followed: the rename
replaces the link itself, and logs are opened with O_NOFOLLOW.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path
from typing import BinaryIO

from lakecast.errors import LocalStackError

PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600


def private_dir(path: Path) -> Path:
    """Create ``path`` (and its missing parents) 0700, or tighten it to 0700; return it.

    Raises:
        LocalStackError: ``path`` is a symlink, not a folder, or owned by another user.
    """
    missing = []
    probe = path
    while not probe.exists() and not probe.is_symlink():
        missing.append(probe)
        probe = probe.parent
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):  # another process made it meanwhile
            folder.mkdir(mode=PRIVATE_DIR_MODE)
    found = path.lstat()
    if stat.S_ISLNK(found.st_mode) or not stat.S_ISDIR(found.st_mode):
        msg = f"state folder {path} is a symlink or not a folder: remove it and try again"
        raise LocalStackError(msg)
    if found.st_uid != os.getuid():
        msg = f"state folder {path} belongs to uid {found.st_uid}, not to this user ({os.getuid()})"
        raise LocalStackError(msg)
    if stat.S_IMODE(found.st_mode) & 0o077:
        path.chmod(PRIVATE_DIR_MODE)
    return path


def write_private(path: Path, data: bytes | str) -> None:
    """Replace ``path`` with ``data``, mode 0600, atomically and never through a symlink."""
    private_dir(path.parent)
    payload = data.encode() if isinstance(data, str) else data
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(descriptor, "wb") as out:
            out.write(payload)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def open_log(path: Path) -> BinaryIO:
    """Open a log for appending (created 0600), refusing a symlink at its name."""
    private_dir(path.parent)
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        descriptor = os.open(path, flags, PRIVATE_FILE_MODE)
    except OSError as exc:
        msg = f"could not open the log {path}: {exc}"
        raise LocalStackError(msg) from exc
    return os.fdopen(descriptor, "ab")
