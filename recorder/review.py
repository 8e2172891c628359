"""One episode described for a person: metadata, streams with their shapes and rates, cameras, provenance."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from recorder.backend import open_episode
from recorder.reader import EpisodeReader

PROVENANCE_ATTRS = ("incomplete", "repaired_from", "trimmed_from", "original_num_steps", "trim_range", "note")
SESSION_ATTRS = ("achieved_rate_hz", "late_ticks", "stopped_by", "stale_samples", "malformed_samples",
                 "device_errors", "tick_ms_p99")


def _rate(t: np.ndarray) -> str:
    """"20.0 Hz" from a time series [s], or "-" when it has fewer than two distinct times."""
    span = float(t[-1] - t[0]) if len(t) > 1 else 0.0
    return f"{(len(t) - 1) / span:.1f} Hz" if span > 0 else "-"


def _streams(reader: EpisodeReader) -> list[str]:
    rows = [("timestamp", reader.timestamps), ("observation/joint_pos", reader.joint_pos),
            ("observation/joint_vel", reader.joint_vel), ("observation/ee_pose", reader.ee_pose),
            ("action", reader.action)]
    rows += [(f"device/{k}", reader.device(k)) for k in reader.device_keys]
    rows += [(f"extras/{k}", reader.extras(k)) for k in reader.extras_keys]
    width = max(len(name) for name, _ in rows)
    return [f"  {name:<{width}}  {str(a.dtype):<8} {tuple(a.shape)}" for name, a in rows]


def _camera(reader: EpisodeReader, cam: str) -> list[str]:
    info = reader.camera_info(cam)
    t = reader.camera_timestamps(cam)
    distinct = np.unique(t)
    codec = "JPEG" if reader.is_jpeg(cam) else "lossless"
    depth = f", depth x {reader.depth_scale_m(cam):g} m" if reader.has_depth(cam) else ""
    lines = [f"  {cam}: {info.width}x{info.height} {codec}{depth}, {reader.num_frames(cam)} frames stored, "
             f"{_rate(distinct)} ({info.mount})"]
    stats = reader.camera_stats(cam)
    if stats is not None:
        age = "" if stats.max_age_ms is None else f", oldest {stats.max_age_ms:.0f} ms"
        lines.append(f"    {stats.used} frames used, {stats.drops} dropped, {stats.duplicates} steps reused a frame, "
                     f"{stats.stale} stale{age}, {stats.timestamps} timestamps, state {stats.state}")
    return lines


def describe_episode(path: Path) -> str:
    """A multi-line description of one episode (the text `teleop episodes show` prints).

    Raises:
        EpisodeError: The episode is missing, unfinished or damaged.
    """
    path = Path(path)
    with open_episode(path) as reader:
        a = reader.attrs
        t = reader.timestamps
        outcome = {True: "success", False: "failure", None: "unknown"}[reader.success]
        lines = [
            f"{path.name}: {a['robot']} / {a['task']}, {outcome}",
            f"  instruction: {a['instruction']!r}",
            f"  {reader.num_steps} steps, {reader.duration_s:.2f} s, control rate {a['control_rate_hz']:g} Hz "
            f"(achieved {_rate(t)})",
            f"  operator device: {a['operator_device']}, seed {a['seed']}, software {a['software_version']}, "
            f"format version {a['format_version']}" + ("" if reader.sealed else " (metadata not checksummed)"),
        ]
        session = [f"{key} {a[key]:.3g}" if isinstance(a[key], float) else f"{key} {a[key]}"
                   for key in SESSION_ATTRS if key in a]
        if session:
            lines.append("  recording: " + ", ".join(session))
        lines.append("streams:")
        lines += _streams(reader)
        if reader.camera_names:
            lines.append("cameras:")
            for cam in reader.camera_names:
                lines += _camera(reader, cam)
        provenance = [f"{key} {a[key]}" for key in PROVENANCE_ATTRS if key in a]
        if provenance:
            lines.append("provenance: " + ", ".join(provenance))
    return "\n".join(lines)
