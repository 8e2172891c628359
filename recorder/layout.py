"""The layout every episode backend shares: names, attributes, the rows of a step and how they are checked.

An episode holds one row per control step in step-aligned arrays that share axis 0 (N steps), and per camera
the distinct frames it delivered in frame arrays (axis 0 = F frames, F <= N): a 30 fps camera in a 100 Hz loop
stores each frame once, and the step-aligned `cameras/<cam>/frame_index` names the frame of every step.
Colour frames are stored lossless (`rgb`) or, with image_codec="jpeg", as JPEG files (`rgb_jpeg`, one
variable-length byte string per frame, with its CRC-32 in `rgb_jpeg_crc32`; see recorder.jpeg). The layout on
disk is in recorder/hdf5.py; recorder/zarr_store.py stores the same names as a zarr v3 directory. Episodes of
format version 1 (one frame row per step, no frame_index) are still read; version 2 lacks the integrity record
(recorder.integrity).
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import zlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from recorder.cameras import DepthFrame
from recorder.step import CameraFrame, CameraInfo, EpisodeMeta, Step
from teleop import __version__
from teleop.errors import EpisodeError

Clock = Callable[[], float]

FORMAT = "teleop-episode"
FORMAT_VERSION = 3
# version 1: frame arrays were step-aligned (one stored frame per step); version 2: no integrity record
READABLE_VERSIONS = (1, 2, 3)
SEALED_VERSION = 3  # from this version on an episode must carry its integrity record (recorder.integrity)
PARTIAL_SUFFIX = ".partial"
UNFINISHED = "unfinished recording (the recording process stopped before it finished)"
ROW_BLOCK = 64  # rows added per resize; arrays are trimmed to the step count at close
MAX_CHUNK_BYTES = 1 << 20
# A recording stops (cleanly) when less than this, at most a 20th of the disk, plus 4 steps' raw size is free.
MIN_FREE_BYTES = 32 << 20
FLUSH_INTERVAL_S = 0.2  # rows reach the OS this often: what a killed recording can lose, beside its queue [s]
SYNC_INTERVAL_S = 1.0  # ... and the disk (fsync) this often: what a power cut can lose [s]
MIN_FREE_SHARE = 20

JSON_ATTRS = ("joint_names", "action_names", "initial_state")
META_ATTRS = (
    "format",
    "format_version",
    "robot",
    "task",
    "instruction",
    "control_rate_hz",
    "operator_device",
    "joint_names",
    "action_names",
    "start_time",
    "seed",
    "initial_state",
    "software_version",
)
CLOSE_ATTRS = ("num_steps", "success", "duration_s")
CAMERA_ATTRS = ("width", "height", "K", "T_world_camera", "mount")
DEPTH_SCALE_ATTR = "depth_scale_m"  # camera group attribute of cameras recorded with depth [m per unit]
IMAGE_CODECS = ("lossless", "jpeg")
FRAME_ARRAYS = ("rgb", "rgb_jpeg", "rgb_jpeg_crc32", "depth")  # a camera's arrays with one row per frame
BASE_DATASETS = (
    "timestamp",
    "observation/joint_pos",
    "observation/joint_vel",
    "observation/ee_pose",
    "action",
)
SUCCESS_CODES = {True: 1, False: 0, None: -1}
TRASH_DIR = ".trash"  # deleted and replaced episodes (recorder.trash)
EPISODE_NAME = re.compile(r"^episode_(\d+)(\.h5|\.zarr)(\.partial)?$")
DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def partial_path(path: Path) -> Path:
    """The name an episode has while it is being recorded: `<path>.partial`."""
    return path.with_name(path.name + PARTIAL_SUFFIX)


def final_path(partial: Path) -> Path:
    """The name a `.partial` episode gets once it is finished or repaired."""
    return partial.with_name(partial.name.removesuffix(PARTIAL_SUFFIX))


def fail(path: Path, problem: str, fix: str = "") -> EpisodeError:
    """An EpisodeError that names the file, the problem and, where there is one, the fix."""
    return EpisodeError(f"{path}: {problem}" + (f"; {fix}" if fix else ""))


def fsync_path(path: Path) -> None:
    """Flush a file or directory to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_episode_path(path: Path) -> None:
    """Delete an episode file or directory; a no-op when it does not exist."""
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def is_disk_full(exc: BaseException) -> bool:
    """True for an OSError that means no space is left (h5py puts the errno only in its message)."""
    if isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS:
        return True
    text = str(exc)
    return any(f"errno = {code}," in text or os.strerror(code) in text for code in DISK_FULL_ERRNOS)


def free_space_text(directory: Path) -> str:
    """Free space of the file system holding `directory`, e.g. "3.2 MB free"."""
    try:
        return f"{shutil.disk_usage(directory).free / 1e6:.1f} MB free"
    except OSError:
        return "free space unknown"


# ---------------------------------------------------------------------------------------------- rows


def meta_attrs(meta: EpisodeMeta) -> dict[str, Any]:
    """Root attributes known when recording starts."""
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "robot": meta.robot,
        "task": meta.task,
        "instruction": meta.instruction,
        "control_rate_hz": float(meta.control_rate_hz),
        "operator_device": meta.operator_device,
        "joint_names": json.dumps(list(meta.joint_names)),
        "action_names": json.dumps(list(meta.action_names)),
        "start_time": float(meta.start_time),
        "seed": -1 if meta.seed is None else int(meta.seed),
        "initial_state": json.dumps(meta.initial_state),
        "software_version": __version__,
    }


def camera_attrs(info: CameraInfo) -> dict[str, Any]:
    """Attributes of one camera group."""
    return {
        "width": int(info.width),
        "height": int(info.height),
        "K": np.asarray(info.K, dtype=np.float64).reshape(3, 3),
        "T_world_camera": np.asarray(info.T_world_camera, dtype=np.float64).reshape(4, 4),
        "mount": info.mount,
    }


def step_rows(step: Step) -> dict[str, np.ndarray]:
    """Array name -> this step's row, for every step-aligned array."""
    rows: dict[str, np.ndarray] = {
        "timestamp": np.asarray(step.t, dtype=np.float64),
        "observation/joint_pos": np.asarray(step.joint_pos),
        "observation/joint_vel": np.asarray(step.joint_vel),
        "observation/ee_pose": np.asarray(step.ee_pose),
        "action": np.asarray(step.action),
    }
    rows.update({f"device/{k}": np.asarray(v) for k, v in step.device.items()})
    rows.update({f"extras/{k}": np.asarray(v) for k, v in step.extras.items()})
    for cam, frame in step.frames.items():
        rows[f"cameras/{cam}/rgb"] = np.asarray(frame.rgb)
        rows[f"cameras/{cam}/timestamp"] = np.asarray(frame.t, dtype=np.float64)
        rows[f"cameras/{cam}/seq"] = np.asarray(frame.seq, dtype=np.int64)
        depth = frame_depth(frame)
        if depth is not None:
            rows[f"cameras/{cam}/depth"] = np.asarray(depth)
    return rows


def frame_depth(frame: CameraFrame) -> np.ndarray | None:
    """The (H, W) depth image of a DepthFrame that carries one, else None."""
    return frame.depth if isinstance(frame, DepthFrame) else None


def depth_scales(step: Step) -> dict[str, float]:
    """Camera name -> metres per depth unit, for the cameras whose frame carries depth."""
    return {
        cam: float(frame.depth_scale_m)
        for cam, frame in step.frames.items()
        if isinstance(frame, DepthFrame) and frame.depth is not None
    }


def is_image(name: str) -> bool:
    """True for camera frame arrays (colour, JPEG and depth), which are stored one frame per chunk."""
    return name.startswith("cameras/") and name.endswith(("/rgb", "/rgb_jpeg", "/depth"))


def is_depth(name: str) -> bool:
    """True for camera depth arrays, (F, H, W) uint16."""
    return name.startswith("cameras/") and name.endswith("/depth")


def is_jpeg(name: str) -> bool:
    """True for JPEG frame arrays, (F,) variable-length uint8 byte strings."""
    return name.startswith("cameras/") and name.endswith("/rgb_jpeg")


def is_frame_array(name: str) -> bool:
    """True for a camera's frame arrays, whose axis 0 counts distinct frames rather than steps."""
    return name.startswith("cameras/") and name.rsplit("/", 1)[-1] in FRAME_ARRAYS


def camera_of(name: str) -> str:
    """The camera of an array named cameras/<cam>/..."""
    return name.split("/")[1]


def jpeg_crc(data: bytes | np.ndarray) -> np.uint32:
    """CRC-32 of a stored JPEG file (stored next to it: HDF5 has no checksum filter for variable-length data)."""
    return np.uint32(zlib.crc32(data.tobytes() if isinstance(data, np.ndarray) else data))


def rows_per_chunk(row: np.ndarray) -> int:
    """Chunk length along axis 0 for rows like `row`: one frame per image chunk, up to 1 MiB otherwise."""
    return int(np.clip(MAX_CHUNK_BYTES // max(row.nbytes, 1), 1, ROW_BLOCK))


def _expected_shapes(meta: EpisodeMeta) -> dict[str, tuple[int, ...]]:
    """Row shapes that the episode's metadata fixes (empty name lists fix nothing)."""
    shapes: dict[str, tuple[int, ...]] = {"observation/ee_pose": (7,)}
    if meta.joint_names:
        shapes["observation/joint_pos"] = shapes["observation/joint_vel"] = (len(meta.joint_names),)
    if meta.action_names:
        shapes["action"] = (len(meta.action_names),)
    for cam, info in meta.cameras.items():
        shapes[f"cameras/{cam}/rgb"] = (int(info.height), int(info.width), 3)
    return shapes


def _check_names(path: Path, step: Step) -> None:
    """Device, extras and camera names become array names: non-empty, without '/', not '.'."""
    for kind, names in (("device", step.device), ("extras", step.extras), ("camera", step.frames)):
        bad = [name for name in names if not name or "/" in name or name.startswith((".", "__"))]
        if bad:
            raise fail(
                path, f"invalid {kind} names {bad}", "use non-empty names without '/', not starting with '.' or '__'"
            )


def check_first_step(path: Path, meta: EpisodeMeta, step: Step, rows: Mapping[str, np.ndarray]) -> None:
    """Check the first step against the metadata: names, cameras, shapes and dtypes."""
    _check_names(path, step)
    cams = {name.split("/")[1] for name in rows if name.startswith("cameras/")}
    if cams != set(meta.cameras):
        raise fail(
            path,
            f"the step has frames from cameras {sorted(cams)} but EpisodeMeta.cameras lists "
            f"{sorted(meta.cameras)}",
            "give every step one frame from each camera in EpisodeMeta.cameras",
        )
    for name, row in rows.items():
        if row.dtype.kind not in "biuf":
            raise fail(path, f"{name} has dtype {row.dtype}", "store numbers or booleans only")
    for name, shape in _expected_shapes(meta).items():
        if rows[name].shape != shape:
            raise fail(path, f"{name} has shape {rows[name].shape} but the metadata implies {shape}")
    for cam in cams:
        if rows[f"cameras/{cam}/rgb"].dtype != np.uint8:
            raise fail(path, f"camera {cam!r} frames are {rows[f'cameras/{cam}/rgb'].dtype}", "pass uint8 RGB")
    _check_depth(path, meta, step, rows)


def _check_depth(path: Path, meta: EpisodeMeta, step: Step, rows: Mapping[str, np.ndarray]) -> None:
    """Depth images: (H, W) uint16 on the colour image's grid, with a positive scale."""
    for cam, scale in depth_scales(step).items():
        depth = rows[f"cameras/{cam}/depth"]
        info = meta.cameras[cam]
        if depth.shape != (info.height, info.width) or depth.dtype != np.uint16:
            raise fail(
                path,
                f"camera {cam!r} depth is {depth.dtype} {depth.shape}",
                f"pass uint16 depth of shape {(info.height, info.width)}, registered to the colour image",
            )
        if not scale > 0:
            raise fail(path, f"camera {cam!r} depth has depth_scale_m {scale}", "pass the metres per depth unit")


def empty_rows(meta: EpisodeMeta) -> dict[str, np.ndarray]:
    """Rows that give a zero-step episode the required arrays with their metadata shapes."""
    rows = {"timestamp": np.zeros((), np.float64), "observation/ee_pose": np.zeros(7)}
    rows["observation/joint_pos"] = rows["observation/joint_vel"] = np.zeros(len(meta.joint_names))
    rows["action"] = np.zeros(len(meta.action_names))
    for cam, info in meta.cameras.items():
        rows[f"cameras/{cam}/rgb"] = np.zeros((info.height, info.width, 3), np.uint8)
        rows[f"cameras/{cam}/timestamp"] = np.zeros((), np.float64)
        rows[f"cameras/{cam}/seq"] = np.zeros((), np.int64)
    return rows


def to_attr(path: Path, key: str, value: Any) -> Any:
    """A value every backend can store as an attribute, or EpisodeError."""
    if isinstance(value, (str, bool, int, float, np.generic)):
        return value
    if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
        return value
    raise fail(path, f"attribute {key!r} has type {type(value).__name__}", "pass str, bool, int, float or arrays")


def decode_attr(value: Any) -> Any:
    """An attribute as a plain Python value (str for bytes, int/float/bool for numpy scalars)."""
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.generic):
        return value.item()
    return value
