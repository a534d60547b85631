"""Content-addressed model artifacts: ``<registry root>/artifacts/<sha256>/<file name>``.

An artifact's address is its sha256, so storing the same bytes twice is a no-op and the
registry row that names the hash is the proof of what was registered. Every read hashes the
bytes it returns; the caller loads those very bytes, never the file a second time.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from lakecast.errors import ModelIntegrityError, RegistryError

ARTIFACTS_DIR = "artifacts"
_CHUNK = 1 << 20


def local_path(uri: str) -> Path:
    """A local filesystem path from a path or ``file:`` URI; other schemes are refused."""
    if uri.startswith("file://"):
        return Path(uri[len("file://") :])
    if uri.startswith("file:"):
        return Path(uri[len("file:") :])
    if "://" in uri:
        msg = f"registry artifacts: {uri!r} is not on a local filesystem (only paths and file:)"
        raise RegistryError(msg)
    return Path(uri)


def stored_artifact_path(root: Path, stored: str, model: str, version: str) -> Path:
    """The path a ``versions`` row's ``artifact_path`` names, refused unless it stays under the
    registry root: the rows are data anyone with write access to the table can change, and a
    tampered one must not make a loader read ``/etc/passwd`` or ``../../x``.

    Raises:
        ModelIntegrityError: the stored path is empty, absolute (``/x``, ``C:\\x``, ``file:``,
            any URI) or has a ``..`` part.
    """
    where = f"model {model!r} version {version}: the registry row's artifact_path {stored!r}"
    if not stored:
        msg = f"{where} is empty"
        raise ModelIntegrityError(msg)
    parts = re.split(r"[\\/]", stored)
    if stored.startswith(("/", "\\")) or ":" in parts[0]:  # a drive, file:, any URI
        msg = f"{where} is absolute; it must be relative to the registry root {root}"
        raise ModelIntegrityError(msg)
    if ".." in parts:
        msg = f"{where} climbs out of the registry root {root} ('..')"
        raise ModelIntegrityError(msg)
    return root / stored


def sha256_file(path: Path) -> str:
    """The hex sha256 of a file's content, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class StoredArtifact:
    """Where an artifact was stored, relative to the registry root, and its hash."""

    sha256: str
    relative_path: str


class ArtifactStore:
    """The artifacts folder of one registry."""

    def __init__(self, registry_root: str | Path) -> None:
        self.root = local_path(str(registry_root))

    def path_of(self, relative_path: str) -> Path:
        return self.root / relative_path

    def put(self, source: Path) -> StoredArtifact:
        """Copy ``source`` under its sha256; atomic (temp file then rename), idempotent."""
        if not source.is_file():
            msg = f"registry artifacts: {source} is not a file"
            raise RegistryError(msg)
        sha = sha256_file(source)
        relative = f"{ARTIFACTS_DIR}/{sha}/{source.name}"
        target = self.root / relative
        if target.is_file() and sha256_file(target) == sha:
            return StoredArtifact(sha, relative)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".incoming-")
        os.close(fd)
        try:
            shutil.copyfile(source, tmp)
            os.replace(tmp, target)
        finally:
            Path(tmp).unlink(missing_ok=True)
        return StoredArtifact(sha, relative)

    def read_verified(self, path: Path, expected_sha256: str, model: str, version: str) -> bytes:
        """The artifact's bytes, after checking their sha256 against the registry's.

        Raises:
            ModelIntegrityError: the file is missing or its content hashes to another value.
        """
        return read_verified(path, expected_sha256, model, version)


def read_verified(path: Path, expected_sha256: str, model: str, version: str) -> bytes:
    """Read a whole artifact and refuse it unless its sha256 is ``expected_sha256``."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        msg = f"model {model!r} version {version}: artifact {path} cannot be read: {exc}"
        raise ModelIntegrityError(msg) from exc
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected_sha256:
        msg = (
            f"model {model!r} version {version}: artifact {path} has sha256 {actual}, "
            f"the registry recorded {expected_sha256}"
        )
        raise ModelIntegrityError(msg)
    return data
