"""Labels of a finished episode: success, instruction and a note, changed after recording and sealed again.

A label change rewrites the root attributes and the integrity record (recorder.integrity) together, atomically:
an HDF5 episode is copied (in the kernel, without reading it into the process), changed and renamed over the
original; a zarr episode's root metadata file is replaced in one rename. The episode is verified before (its
metadata must match its checksums, so damage is never sealed as if it were intact), and a kill at any moment
leaves either the old or the new labels.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from recorder import integrity
from recorder.backend import backend_for, open_episode
from recorder.layout import SUCCESS_CODES, fail, fsync_path

_UNCHANGED: Any = object()


def label_episode(
    path: Path, success: bool | None = _UNCHANGED, instruction: str | None = None, note: str | None = None
) -> dict[str, Any]:
    """Change an episode's labels; arguments left out stay as they are.

    Args:
        path: A finished episode.
        success: True, False, or None for unknown.
        instruction: The language instruction.
        note: Free text (stored as the attribute `note`).

    Returns:
        The attributes written (as stored).

    Raises:
        EpisodeError: The episode is missing, unfinished or damaged, or nothing was given to change.
    """
    path = Path(path)
    attrs: dict[str, Any] = {}
    if success is not _UNCHANGED:
        attrs["success"] = np.int8(SUCCESS_CODES[None if success is None else bool(success)])
    if instruction is not None:
        attrs["instruction"] = str(instruction)
    if note is not None:
        attrs["note"] = str(note)
    if not attrs:
        raise fail(path, "no label given", "pass success, instruction or note")
    update_attrs(path, attrs)
    return attrs


def update_attrs(path: Path, attrs: Mapping[str, Any]) -> None:
    """Set root attributes of a finished, intact episode and seal it again, atomically."""
    path = Path(path)
    with open_episode(path):  # verifies the metadata against its checksums
        pass
    _UPDATERS[backend_for(path).suffix](path, attrs)


def _update_hdf5(path: Path, attrs: Mapping[str, Any]) -> None:
    import h5py

    from recorder.hdf5 import seal

    scratch = path.with_name(f".{path.name}.labelling")
    shutil.copyfile(path, scratch)  # copy_file_range: the data never passes through the process
    try:
        with h5py.File(scratch, "r+") as file:
            file.attrs.update(attrs)
            seal(file)
        fsync_path(scratch)
        os.replace(scratch, path)
    except BaseException:
        scratch.unlink(missing_ok=True)
        raise
    fsync_path(path.parent)


def _update_zarr(path: Path, attrs: Mapping[str, Any]) -> None:
    import zarr
    from zarr.storage import LocalStore

    from recorder.zarr_store import describe

    root = zarr.open_group(LocalStore(path), mode="r+", zarr_format=3)
    new = {**root.attrs, **{key: _json_value(value) for key, value in attrs.items()}}
    description = describe(root, path)
    sealed = integrity.Description({**description.attrs, integrity.ROOT: new}, description.arrays,
                                   description.documents)
    new[integrity.INTEGRITY_ATTR] = integrity.seal(sealed)
    root.attrs.put(new)  # one write of zarr.json, to a temporary name renamed over it
    fsync_path(path / "zarr.json")
    fsync_path(path)


def _json_value(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else json.loads(json.dumps(value))


_UPDATERS: dict[str, Callable[[Path, Mapping[str, Any]], None]] = {".h5": _update_hdf5, ".zarr": _update_zarr}
