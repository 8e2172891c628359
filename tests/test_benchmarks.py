"""Benchmarks run end to end (quick mode) and end with one JSON line of the documented shape; no timings."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
IK_FIELDS = {"p50_ms", "p99_ms", "pos_err_mm", "rot_err_deg", "limit_violations", "max_step_rad"}
IK_SCENARIOS = ("random", "random_full_range", "unreachable", "jump")


RECORDING_FIELDS = {
    "steps", "loop_jitter_p50_ms", "loop_jitter_p99_ms", "late_ticks", "dropped_frames", "dropped_frames_sync",
    "frames_produced", "frames_stored", "duplicated_steps", "duplicated_fraction", "rss_mb", "peak_rss_mb",
    "rss_slope_second_half_mb_per_min", "cpu_s", "load_avg",
}
EPISODE_FIELDS = {
    "stop_to_readable_s", "close_s", "mb_per_minute", "write_mb_s", "disk_mb_s", "frame_errors", "unknown_seqs",
}


def run_benchmark(*args: str) -> dict:
    """Run a benchmark script; the JSON object on its last stdout line."""
    done = subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    assert lines, "the benchmark printed nothing on stdout"
    return json.loads(lines[-1])


def test_hand_retarget_benchmark_compares_both_methods_on_both_streams(hand_landmarker_model) -> None:  # noqa: ANN001
    pytest.importorskip("dex_retargeting")
    from conftest import HAND_VIDEO

    if not HAND_VIDEO.is_file():
        pytest.skip(f"{HAND_VIDEO} is not here")
    result = run_benchmark("benchmarks/hand_retarget.py", "--frames", "40", "--rounds", "1", "--video", str(HAND_VIDEO),
                           "--model", str(hand_landmarker_model))
    fields = {"err_mm", "jitter_rad", "max_step_rad", "over_speed", "limit_violations", "safety_clamps", "p50_ms",
              "p99_ms", "p99_cpu_ms"}
    assert set(result) == {"mediapipe", "openxr"}
    for stream in result.values():
        assert fields <= set(stream["ours"]) and fields <= set(stream["dex"])
        assert stream["frames"] == 40 and stream["speedup_p50"] > 0
        assert stream["ours"]["over_speed"] == 0 and stream["ours"]["limit_violations"] == 0


@pytest.fixture(scope="module")
def kinematics_result() -> dict:
    pytest.importorskip("ikpy")
    pytest.importorskip("pybullet")
    return run_benchmark("benchmarks/kinematics.py", "--quick", "--seed", "1")


def test_kinematics_benchmark_reports_every_solver_and_scenario(kinematics_result: dict) -> None:
    assert set(kinematics_result) == {"ik", "retarget"}
    assert set(kinematics_result["ik"]) == {"panda", "xarm7"}
    for robot in kinematics_result["ik"].values():
        assert set(robot) == {"ours", "pybullet", "ikpy"}
        for solver in robot.values():
            assert IK_FIELDS <= set(solver)
            for scenario in IK_SCENARIOS:
                assert {"p50_ms", "p99_ms", "limit_violations", "max_step_rad"} <= set(solver[scenario])
        assert {"speedup_vs_pybullet", "speedup_vs_ikpy"} <= set(robot["ours"])
    retarget = kinematics_result["retarget"]["allegro"]["ours"]
    assert {"p50_ms", "p99_ms", "tip_err_mm"} <= set(retarget)


def test_kinematics_benchmark_figures_are_sane(kinematics_result: dict) -> None:
    for robot in kinematics_result["ik"].values():
        ours = robot["ours"]
        assert ours["limit_violations"] == 0 and ours["velocity_violations"] == 0
        for solver in robot.values():
            assert 0 < solver["p50_ms"] <= solver["p99_ms"]
            assert solver["pos_err_mm"] >= 0 and solver["max_step_rad"] >= 0
    assert kinematics_result["retarget"]["allegro"]["ours"]["tip_err_mm"] >= 0


def test_devices_benchmark_reports_every_backend_or_why_it_was_skipped() -> None:
    backends = ("gamepad", "vive", "openxr", "webcam_hands", "keyboard", "replay")
    with_peer = ("gamepad", "vive", "openxr", "webcam_hands")
    fields = {"p50_ms", "p99_ms", "max_ms", "n", "load_avg"}
    done = subprocess.run(
        [sys.executable, "benchmarks/devices.py", "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    assert lines, "the benchmark printed nothing on stdout"
    result = json.loads(lines[-1])
    assert set(backends) <= set(result) and "machine" in result
    measured = [name for name in backends if "skipped" not in result[name]]
    assert {"keyboard", "replay"} <= set(measured)  # these need no optional package
    for name in backends:
        if name not in measured:
            assert isinstance(result[name]["skipped"], str) and result[name]["skipped"]
            continue
        assert fields <= set(result[name]), name
        assert result[name]["n"] > 0 and result[name]["p50_ms"] <= result[name]["max_ms"]
        if name in with_peer:
            assert {"peer_p50_ms", "peer_p99_ms", "peer_max_ms"} <= set(result[name]), name
    if "openxr" in measured:
        assert {"p50_ms", "p99_ms", "max_ms", "peer_p50_ms"} <= set(result["openxr"]["hand"])
    if "gamepad" in measured:
        assert {"p50_ms", "p99_ms", "peer_p50_ms"} <= set(result["gamepad"]["tight_poll"])


@pytest.fixture(scope="module")
def recording_result() -> dict:
    pytest.importorskip("zarr")
    return run_benchmark("benchmarks/recording.py", "--quick", "--seconds", "1")


def test_recording_benchmark_reports_ours_and_both_peers(recording_result: dict) -> None:
    assert set(recording_result) == {"hdf5", "zarr", "baseline_no_recording", "inline_writer", "machine"}
    assert set(recording_result["inline_writer"]) == {"hdf5", "zarr"}
    assert RECORDING_FIELDS <= set(recording_result["baseline_no_recording"])
    for figures in (recording_result["hdf5"], recording_result["zarr"], *recording_result["inline_writer"].values()):
        assert RECORDING_FIELDS | EPISODE_FIELDS <= set(figures)
        assert set(figures["peak_rss_mb"]) == {"25", "50", "75", "100"}
    assert "max_queued_steps" in recording_result["hdf5"] and "max_queued_steps" in recording_result["zarr"]


def test_recording_benchmark_reads_back_what_the_cameras_produced(recording_result: dict) -> None:
    for figures in (recording_result["hdf5"], recording_result["zarr"], *recording_result["inline_writer"].values()):
        assert figures["steps"] > 0 and figures["frames_produced"] > 0
        assert figures["frame_errors"] == 0 and figures["unknown_seqs"] == 0  # stored frames are the cameras'
        assert 0 <= figures["dropped_frames"] <= figures["frames_produced"]
        assert figures["disk_mb_s"] > 0 and figures["stop_to_readable_s"] >= figures["close_s"] >= 0


def test_depth_codec_measurement_is_lossless_for_every_codec() -> None:
    pytest.importorskip("zarr")
    result = run_benchmark("benchmarks/recording.py", "--depth-codecs", "--quick")
    codecs = result["depth_codecs"]
    assert {"hdf5 shuffle+lzf", "zarr blosc zstd 1 bitshuffle"} <= set(codecs)
    for figures in codecs.values():
        assert {"write_ms", "read_ms", "kb", "ratio"} <= set(figures) and figures["ratio"] > 0


def test_episode_read_benchmark_reports_every_configuration_and_the_file_counts() -> None:
    pytest.importorskip("zarr")
    result = run_benchmark("benchmarks/episode_read.py", "--quick")
    assert set(result) == {"hdf5", "zarr", "zarr_64_row_chunks", "ratios", "machine"}
    for name in ("hdf5", "zarr", "zarr_64_row_chunks"):
        assert set(result[name]) == {"write_s", "files", "open_ms", "read_small_arrays_s",
                                     "read_all_frames_one_camera_s", "random_frame_ms"}
    assert result["hdf5"]["files"] == 1
    # 2000 steps: the 64-row layout has 32 chunk files per small array, the app's layout 2.
    assert result["zarr_64_row_chunks"]["files"] - result["zarr"]["files"] >= 30 * 10


def test_encoder_probe_reports_every_probe(tmp_path: Path) -> None:
    from conftest import SimulatedClock

    from teleop.recording import record_episode
    from teleop.rig import RigConfig, build_rig
    from teleop.session import SessionConfig
    from teleop.sim import SimConfig

    clock = SimulatedClock()
    rig = build_rig(RigConfig(robot="franka", task="franka-reach", sim=SimConfig(image_size=(48, 48)),
                              session=SessionConfig(rate_hz=20.0)), clock=clock, sleep=clock.sleep)
    try:
        for seed in range(5):
            record_episode(rig, tmp_path, seed)
    finally:
        rig.close()
    result = run_benchmark("benchmarks/encoder_probe.py", str(tmp_path), "--steps", "5", "--folds", "1",
                           "--threads", "1")
    assert result["folds"] == 1 and result["frames"] > 50
    assert set(result["mean_error_cm"]) == {"resnet18 random", "keypoints random, frozen", "keypoints", "guess"}
    assert all(0 < v < 200 for v in result["mean_error_cm"].values())


def test_gui_loop_benchmark_records_the_same_episodes_both_ways() -> None:
    pytest.importorskip("PyQt6")
    result = run_benchmark("benchmarks/gui_loop.py", "--rounds", "1")
    assert set(result) == {"cli", "gui", "ratio", "machine"}
    for mode in ("cli", "gui"):
        [episode] = result[mode]["episodes"]
        assert episode["steps"] > 10 and 0 < episode["achieved_rate_hz"] <= 21
    assert 0 < result["ratio"]["gui_over_cli_rate"] < 2
