"""Byte-reproducible zip artifacts: the same model saved twice, in any process, on any
machine, gives the same bytes, so the same sha256 in the registry.

skops and Keras both write zips that record when and where they were written: entry times,
``id()`` values (skops names each array file by its object's id and memoizes by it; Keras's
config names shared objects by it) and Keras's ``date_saved``. The canonical form keeps every
entry's content but replaces those with what is the same on every save: ids numbered in the
order the schema first mentions them, one fixed timestamp, entries in name order. Loading is
unchanged: the renumbering is a bijection, so what was shared stays shared.
"""

from __future__ import annotations

import json
import os
import re
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

# The earliest time a zip entry can hold (DOS dates start in 1980), as reproducible-builds do.
_EPOCH = (1980, 1, 1, 0, 0, 0)
_MODE = 0o644 << 16  # a regular file's permissions, in a zip entry's external attributes
_NPY_FILE = re.compile(r"^(\d+)\.npy$")

Entries = dict[str, bytes]


def rewrite_zip(path: Path, canonical: Callable[[Entries], Entries]) -> None:
    """Rewrite the zip at ``path`` with ``canonical``'s entries, in name order, each with
    the fixed timestamp and mode and the compression the original used; atomically."""
    with zipfile.ZipFile(path) as archive:
        infos = archive.infolist()
        entries = {info.filename: archive.read(info) for info in infos}
        compression = infos[0].compress_type if infos else zipfile.ZIP_STORED
    staged = path.with_name(path.name + ".canonical")
    with zipfile.ZipFile(staged, "w") as archive:
        for name, content in sorted(canonical(entries).items()):
            info = zipfile.ZipInfo(name, date_time=_EPOCH)
            info.compress_type = compression
            info.external_attr = _MODE
            archive.writestr(info, content)
    os.replace(staged, path)


def canonical_skops(entries: Entries) -> Entries:
    """skops's ``schema.json`` with every ``__id__`` renumbered 1, 2, ... in document order,
    and each ``<id>.npy`` array file renamed to match."""
    schema = json.loads(entries["schema.json"])
    numbers: dict[int, int] = {}

    def number(old: int) -> int:
        return numbers.setdefault(old, len(numbers) + 1)

    renamed: dict[str, str] = {}
    for node in _dicts(schema):
        if isinstance(node.get("__id__"), int):
            node["__id__"] = number(node["__id__"])
        file_name = node.get("file")
        match = _NPY_FILE.match(file_name) if isinstance(file_name, str) else None
        if match:
            new_name = f"{number(int(match.group(1)))}.npy"
            renamed[match.group(0)] = node["file"] = new_name
    out = {renamed.get(name, name): content for name, content in entries.items()}
    out["schema.json"] = json.dumps(schema, indent=2).encode()
    return out


def canonical_keras(entries: Entries) -> Entries:
    """A ``.keras`` archive without ``metadata.json``'s ``date_saved`` (the registry row
    records when a version was made) and with ``config.json``'s ``shared_object_id`` values
    renumbered 1, 2, ... in document order."""
    out = dict(entries)
    metadata = json.loads(entries["metadata.json"])
    metadata.pop("date_saved", None)
    out["metadata.json"] = json.dumps(metadata).encode()
    config = json.loads(entries["config.json"])
    numbers: dict[Any, int] = {}
    for node in _dicts(config):
        if "shared_object_id" in node:
            old = node["shared_object_id"]
            node["shared_object_id"] = numbers.setdefault(old, len(numbers) + 1)
    out["config.json"] = json.dumps(config).encode()
    return out


def _dicts(value: Any) -> Iterator[dict[str, Any]]:
    """Every dict inside a parsed JSON document, parents before children, in key order."""
    if isinstance(value, dict):
        yield value
        for child in value.values():
            yield from _dicts(child)
    elif isinstance(value, list):
        for child in value:
            yield from _dicts(child)
