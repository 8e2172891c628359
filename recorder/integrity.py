"""Checksums of an episode's metadata, so that a damaged attribute or array description is an error.

Chunks carry their own checksums (Fletcher-32 in HDF5, CRC-32C in zarr, a CRC-32 per JPEG file), but the
metadata does not: HDF5 keeps long attribute lists and variable-length strings in heaps without checksums,
and a zarr episode's metadata are plain JSON documents (`zarr.json`), where one flipped bit can change an
array's shape, data type or chunk key encoding, so that it reads as zeros. When an episode is finished, its
writer (or repair) seals it: the root attribute `integrity` (JSON) stores

    attrs       CRC-32 of every group's attributes ("/" for the root, without `integrity` itself)
    arrays      every array's shape and data type, by name (so no array appears, vanishes or changes)
    documents   CRC-32 of every metadata document of a zarr episode but the root's, by relative path

and the reader recomputes all three when it opens the episode (microseconds for the attributes, one small
file read per zarr array). Episodes of format version 3 must carry the record; earlier ones are read without
it (their metadata unverified, which `teleop episodes check` reports).
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

INTEGRITY_ATTR = "integrity"
ROOT = "/"


@dataclass(frozen=True)
class Description:
    """What an episode's metadata says, as read from its storage.

    Attributes:
        attrs: Group name ("/" for the root) -> its attributes as stored.
        arrays: Array name -> (shape, data type name).
        documents: Relative path -> bytes of each metadata file covered (zarr; empty for HDF5).
    """

    attrs: Mapping[str, Mapping[str, Any]]
    arrays: Mapping[str, tuple[tuple[int, ...], str]]
    documents: Mapping[str, bytes] = field(default_factory=dict)


def _plain(value: Any) -> Any:
    """An attribute value as JSON-able Python: str for bytes, numbers for numpy scalars, lists for arrays."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="surrogateescape")
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def attrs_crc(attrs: Mapping[str, Any]) -> int:
    """CRC-32 of a group's attributes (without the integrity record), independent of their order."""
    plain = {key: _plain(value) for key, value in attrs.items() if key != INTEGRITY_ATTR}
    return zlib.crc32(json.dumps(plain, sort_keys=True, default=repr).encode("utf-8", "surrogateescape"))


def seal(description: Description) -> str:
    """The integrity record of an episode, as the JSON string stored in its root attribute."""
    return json.dumps({
        "attrs": {group: attrs_crc(attrs) for group, attrs in description.attrs.items()},
        "arrays": {name: [list(shape), dtype] for name, (shape, dtype) in description.arrays.items()},
        "documents": {name: zlib.crc32(data) for name, data in description.documents.items()},
    }, sort_keys=True)


def damage(record: Any, description: Description) -> list[str]:
    """What in `description` disagrees with the stored integrity record; [] when nothing does."""
    try:
        stored = json.loads(str(_plain(record)))
        attrs, arrays, documents = stored["attrs"], stored["arrays"], stored["documents"]
        arrays = {name: (tuple(shape), str(dtype)) for name, (shape, dtype) in arrays.items()}
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        return [f"its integrity record is unreadable ({type(exc).__name__})"]
    problems = []
    groups = set(attrs) | set(description.attrs)
    bad = sorted(g for g in groups if attrs.get(g) != (attrs_crc(description.attrs[g]) if g in description.attrs
                                                         else None))
    if bad:
        problems.append("the attributes of " + ", ".join("the root" if g == ROOT else g for g in bad)
                        + " do not match their checksum")
    found = {name: (tuple(shape), dtype) for name, (shape, dtype) in description.arrays.items()}
    for name in sorted(set(arrays) | set(found)):
        if name not in found:
            problems.append(f"array {name} is missing")
        elif name not in arrays:
            problems.append(f"array {name} is not part of the episode")
        elif arrays[name] != found[name]:
            problems.append(f"array {name} is described as {found[name]} but was stored as {arrays[name]}")
    for name in sorted(set(documents) | set(description.documents)):
        data = description.documents.get(name)
        if data is None:
            problems.append(f"metadata file {name} is missing")
        elif documents.get(name) != zlib.crc32(data):
            problems.append(f"metadata file {name} fails its checksum")
    return problems
