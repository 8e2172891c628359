"""Trimming an episode to a range of its steps, frame-accurately, without decoding a frame.

`trim_episode(path, start, end)` keeps steps start..end-1 of every step-aligned array and, per camera, the
stored frames those steps show (each once, as recorded: frame_index is rebased to the first one kept). Colour
and depth frames are moved as stored: HDF5 chunks are copied raw (read_direct_chunk / write_direct_chunk,
their Fletcher-32 checksums with them), zarr chunk files are hard-linked (files are never changed in place
once written, so sharing them with the trashed original is safe); only the small step-aligned arrays are
rewritten. The trimmed episode is written under a hidden scratch name, sealed (recorder.integrity) and
flushed to the disk; then the original goes to the trash (recorder.trash), and the trimmed one takes its name.
A kill before that leaves the original in place (and a hidden scratch file or folder `.NAME.trimming`, removed
by the next trim); a kill between the two renames leaves the original in the trash, whole, and the trimmed
episode under its scratch name.

Provenance, stored as root attributes: `trimmed_from` (the name), `original_num_steps`, and `trim_range`
[first, end) in steps of the original recording (trims compose: trimming a trimmed episode keeps the range
in the original's steps).

`auto_trim_range` finds the idle start and end from the commanded motion (the action's change per step).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from recorder import integrity
from recorder.backend import backend_for, open_episode
from recorder.layout import camera_of, fail, fsync_path, is_frame_array, remove_episode_path
from recorder.reader import EpisodeReader
from recorder.trash import TrashEntry, move_to_trash

MOTION_FRACTION = 1e-3  # a step moves when its action changes by more than this share of the action's range
MIN_MOTION = 1e-4  # ... and by more than this [rad or m]
MARGIN_S = 0.2  # idle time kept before the first and after the last motion [s]


@dataclass(frozen=True)
class TrimResult:
    """A trimmed episode.

    Attributes:
        path: The trimmed episode (the original's name).
        original: The original, in the trash (restore it with recorder.trash.restore).
        start, end: Steps of the original kept: start..end-1.
        num_steps: Steps the original had.
    """

    path: Path
    original: TrashEntry
    start: int
    end: int
    num_steps: int


@dataclass(frozen=True)
class AutoTrim:
    """The range auto_trim_range keeps, and how it decided.

    Attributes:
        start, end: Steps to keep: start..end-1.
        threshold: An action change per step above this is motion [action units].
        first_motion, last_motion: The first and last step with motion.
        margin_steps: Idle steps kept on each side.
    """

    start: int
    end: int
    threshold: float
    first_motion: int
    last_motion: int
    margin_steps: int


def auto_trim_range(reader: EpisodeReader, margin_s: float = MARGIN_S) -> AutoTrim:
    """The steps from just before the first commanded motion to just after the last one.

    Raises:
        EpisodeError: The commanded action never moves.
    """
    action = np.asarray(reader.action, dtype=np.float64)
    if len(action) < 2:
        raise fail(reader.path, f"{len(action)} steps: nothing to trim")
    found = motion_range(action, float(reader.meta.control_rate_hz), margin_s)
    if found is None:
        threshold = motion_threshold(action)
        raise fail(reader.path, f"the commanded action never changes by more than {threshold:.2g} per step",
                   "nothing to keep: delete the episode instead")
    return found


def motion_threshold(action: np.ndarray) -> float:
    """An action change per step above this is motion [action units] (MOTION_FRACTION of the widest
    column's range, at least MIN_MOTION)."""
    return max(MIN_MOTION, MOTION_FRACTION * float(np.ptp(action, axis=0).max())) if len(action) else MIN_MOTION


def motion_range(action: np.ndarray, rate_hz: float, margin_s: float = MARGIN_S) -> AutoTrim | None:
    """The steps of actions (N, A) from just before the first commanded motion to just after the last one
    (margin_s of idle kept on each side); None when the action never moves."""
    action = np.asarray(action, dtype=np.float64)
    threshold = motion_threshold(action)
    change = np.abs(np.diff(action, axis=0)).max(axis=1) if len(action) > 1 else np.zeros(0)
    moving = np.flatnonzero(change > threshold) + 1  # step i moves when action[i] differs from action[i - 1]
    if moving.size == 0:
        return None
    margin = int(round(margin_s * rate_hz))
    first, last = int(moving[0]), int(moving[-1])
    return AutoTrim(start=max(0, first - 1 - margin), end=min(len(action), last + 1 + margin),
                    threshold=threshold, first_motion=first, last_motion=last, margin_steps=margin)


def steps_at_seconds(reader: EpisodeReader, start_s: float | None, end_s: float | None) -> tuple[int, int]:
    """Step range for times measured from the first step [s]: the first step at or after start_s up to the
    last step before end_s."""
    t = np.asarray(reader.timestamps) - float(reader.timestamps[0]) if reader.num_steps else np.zeros(0)
    start = 0 if start_s is None else int(np.searchsorted(t, start_s - 1e-9, side="left"))
    end = len(t) if end_s is None else int(np.searchsorted(t, end_s - 1e-9, side="left"))
    return start, end


def trim_episode(path: Path, start: int, end: int) -> TrimResult:
    """Keep steps start..end-1 of a finished episode (see the module docstring).

    Raises:
        EpisodeError: The episode is missing, unfinished or damaged, or the range is empty or out of bounds.
    """
    path = Path(path)
    with open_episode(path) as reader:
        n = reader.num_steps
        if not 0 <= start < end <= n:
            raise fail(path, f"cannot keep steps {start}..{end - 1} of {n}", f"pick 0 <= start < end <= {n}")
        frames = {cam: reader.frame_indices(cam)[start:end] for cam in reader.camera_names}
        t = reader.timestamps
        attrs = reader.attrs
    first = {cam: int(index[0]) for cam, index in frames.items()}
    ranges = {cam: (first[cam], int(index[-1]) + 1) for cam, index in frames.items()}
    base, original = attrs.get("trim_range", [0, n]), int(attrs.get("original_num_steps", n))
    provenance = {
        "num_steps": end - start,
        "duration_s": float(t[end - 1] - t[start]),
        "trimmed_from": str(attrs.get("trimmed_from", path.name)),
        "original_num_steps": original,
        "trim_range": np.array([int(base[0]) + start, int(base[0]) + end], dtype=np.int64),
    }
    scratch = path.with_name(f".{path.name}.trimming")
    remove_episode_path(scratch)
    try:
        _TRIMMERS[backend_for(path).suffix](path, scratch, start, end, ranges, provenance)
    except BaseException:
        remove_episode_path(scratch)
        raise
    entry = move_to_trash(path)
    os.rename(scratch, path)
    fsync_path(path.parent)
    return TrimResult(path=path, original=entry, start=start, end=end, num_steps=n)


def _rebased(name: str, data: np.ndarray, first: Mapping[str, int]) -> np.ndarray:
    """A step-aligned array's kept rows; a frame_index counts from the first frame kept."""
    if name.startswith("cameras/") and name.endswith("/frame_index"):
        return data - first[camera_of(name)]
    return data


def _trim_hdf5(path: Path, scratch: Path, start: int, end: int, ranges: Mapping[str, tuple[int, int]],
               attrs: Mapping[str, Any]) -> None:
    import h5py

    from recorder.hdf5 import LIBVER, seal

    first = {cam: lo for cam, (lo, _) in ranges.items()}
    with h5py.File(path, "r") as src, h5py.File(scratch, "x", libver=LIBVER) as dst:
        dst.attrs.update(dict(src.attrs))

        def copy(name: str, obj: h5py.Group | h5py.Dataset) -> None:
            if isinstance(obj, h5py.Group):
                dst.require_group(name).attrs.update(dict(obj.attrs))
            elif is_frame_array(name):
                _copy_frames_hdf5(obj, dst, name, ranges[camera_of(name)])
            else:
                rows = _rebased(name, obj[start:end], first)
                dst.create_dataset_like(name, obj, shape=rows.shape)[...] = rows

        src.visititems(copy)
        dst.attrs.update(attrs)
        seal(dst)
    fsync_path(scratch)


def _copy_frames_hdf5(src: Any, dst: Any, name: str, rows: tuple[int, int]) -> None:
    lo, hi = rows
    out = dst.create_dataset_like(name, src, shape=(hi - lo, *src.shape[1:]))
    if src.dtype.kind == "O":  # JPEG files: variable-length rows, copied as bytes (one by one: a lone row
        for k, row in enumerate(src[lo:hi]):  # would be taken for a 2-D array)
            out[k] = row
        return
    if src.chunks[0] != 1:  # the JPEG files' checksums: rows
        out[...] = src[lo:hi]
        return
    tail = (0,) * (src.ndim - 1)
    for j in range(lo, hi):  # one frame per chunk, copied as stored (compressed, with its checksum)
        mask, chunk = src.id.read_direct_chunk((j, *tail))
        out.id.write_direct_chunk((j - lo, *tail), chunk, mask)


def _trim_zarr(path: Path, scratch: Path, start: int, end: int, ranges: Mapping[str, tuple[int, int]],
               attrs: Mapping[str, Any]) -> None:
    import zarr
    from zarr.storage import LocalStore

    from recorder.zarr_store import ROOT_METADATA, describe

    first = {cam: lo for cam, (lo, _) in ranges.items()}
    src = zarr.open_group(LocalStore(path, read_only=True), mode="r", zarr_format=3)
    scratch.mkdir()
    linked: list[Path] = []
    for name, node in src.members(max_depth=None):
        folder = scratch / name
        folder.mkdir(parents=True)
        document = json.loads((path / name / ROOT_METADATA).read_bytes())
        if isinstance(node, zarr.Group):
            (folder / ROOT_METADATA).write_text(json.dumps(document))
            continue
        lo, hi = ranges[camera_of(name)] if is_frame_array(name) else (start, end)
        document["shape"] = [hi - lo, *document["shape"][1:]]
        (folder / ROOT_METADATA).write_text(json.dumps(document))
        if is_frame_array(name) and node.chunks[0] == 1:  # the stored files, linked under their new index
            tail = (0,) * (node.ndim - 1)
            for j in range(lo, hi):
                target = folder / node.metadata.encode_chunk_key((j - lo, *tail))
                os.link(path / name / node.metadata.encode_chunk_key((j, *tail)), target)
                linked.append(target)
        else:
            rows = _rebased(name, np.asarray(node[lo:hi]), first)
            array = zarr.open_array(LocalStore(scratch), path=name, mode="r+", zarr_format=3)
            array.with_config({"write_empty_chunks": True})[...] = rows  # every chunk must exist (recorder.zarr_store)
    root_document = json.loads((path / ROOT_METADATA).read_bytes())
    (scratch / ROOT_METADATA).write_text(json.dumps(root_document))
    root = zarr.open_group(LocalStore(scratch), mode="r+", zarr_format=3)
    root.attrs.update({key: value.tolist() if isinstance(value, np.ndarray) else value
                       for key, value in attrs.items()})
    root.attrs[integrity.INTEGRITY_ATTR] = integrity.seal(describe(root, scratch))
    linked_inodes = {os.stat(f).st_ino for f in linked}
    for directory, _, files in os.walk(scratch):  # what was written here; linked files were durable already
        for file in files:
            if os.stat(Path(directory) / file).st_ino not in linked_inodes:
                fsync_path(Path(directory) / file)
        fsync_path(Path(directory))


_TRIMMERS: dict[str, Callable[..., None]] = {".h5": _trim_hdf5, ".zarr": _trim_zarr}
