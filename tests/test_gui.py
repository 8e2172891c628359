"""The desktop app, driven through Qt events on an offscreen display: record, stop, discard, list."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
pytest.importorskip("PyQt6.QtWidgets")
pytest.importorskip("pyqtgraph")

from PyQt6.QtCore import Qt  # noqa: E402
from PyQt6.QtTest import QTest  # noqa: E402
from PyQt6.QtWidgets import QApplication  # noqa: E402

from recorder.backend import open_episode  # noqa: E402
from recorder.cameras import Capture, SyntheticCamera  # noqa: E402
from recorder.hdf5 import EpisodeReader  # noqa: E402
from recorder.trash import trash_entries  # noqa: E402
from teleop.errors import MissingDependencyError, TeleopError  # noqa: E402
from ui.main_window import CAMERA_ROW_PX, MainWindow  # noqa: E402

LEFT = Qt.MouseButton.LeftButton


@pytest.fixture
def make_window(app: QApplication, tmp_path: Path) -> Iterator[Callable[..., MainWindow]]:
    windows: list[MainWindow] = []

    def make(device: str, robot: str = "franka", task: str = "franka-reach", cameras: dict | None = None) -> MainWindow:
        window = MainWindow(tmp_path / "episodes", robot=robot, task=task, device=device, cameras=cameras)
        window.show()
        QTest.qWaitForWindowExposed(window)
        windows.append(window)
        wait_until(lambda: window.ready, 20)
        return window

    yield make
    for window in windows:
        window.close()


def wait_until(condition: Callable[[], bool], timeout_s: float) -> None:
    """Process Qt events until `condition()` holds; fail after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for the GUI"
        QTest.qWait(20)


def episode_files(window: MainWindow) -> list[Path]:
    return sorted(window.out_dir.glob("episode_*.h5"))


def test_keyboard_recording_moves_the_arm_and_is_listed(make_window: Callable[..., MainWindow]) -> None:
    window = make_window("keyboard")
    assert "engage" in window.controls_label.text()
    assert set(window.camera_views) == set(window.rig_info.cameras)

    QTest.mouseClick(window.record_button, LEFT)
    assert window.recording and not window.record_button.isEnabled()
    QTest.keyClick(window, Qt.Key.Key_Space)  # may arrive before the device is connected: it is replayed
    wait_until(lambda: window.live_steps > 0, 10)
    QTest.qWait(200)
    QTest.keyPress(window, Qt.Key.Key_W)
    QTest.qWait(600)
    live = window.status_label.text()  # the loop's health while it runs
    assert "Hz of 20 (" in live and " late ticks, last tick " in live and " ms), success: " in live
    QTest.keyRelease(window, Qt.Key.Key_W)
    QTest.qWait(200)
    QTest.mouseClick(window.stop_button, LEFT)
    wait_until(lambda: not window.recording, 20)

    [path] = episode_files(window)
    with EpisodeReader(path) as reader:
        assert reader.num_steps > 5
        engaged = reader.device("engaged").astype(bool)
        ee_x = reader.ee_pose[:, 0]
        front = reader.frames("front")
    assert engaged.any()
    assert ee_x[-1] - ee_x[np.argmax(engaged)] > 0.03  # "w" is +x
    assert front.std() > 10 and np.abs(front[-1].astype(int) - front[0]).mean() > 0.5  # a scene that moves
    pixmap = window.camera_views["front"].pixmap()
    assert pixmap is not None and not pixmap.isNull()
    assert window.episode_table.names() == [path.name]
    assert "saved" in window.status_label.text()
    assert window.record_button.isEnabled() and window.robot_combo.isEnabled()


def test_scripted_recording_ends_by_itself_and_discard_moves_it_to_the_trash_until_undone(
        make_window: Callable[..., MainWindow]) -> None:
    window = make_window("scripted")
    seed = window.seed_spin.value()
    QTest.mouseClick(window.record_button, LEFT)
    wait_until(lambda: not window.recording, 30)

    [path] = episode_files(window)
    with EpisodeReader(path) as reader:
        assert reader.success is True
        assert reader.attrs["stopped_by"] == "success"
    assert window.episode_table.names() == [path.name]
    assert window.seed_spin.value() == seed + 1

    data = path.read_bytes()
    assert not window.undo_button.isEnabled()
    QTest.mouseClick(window.discard_button, LEFT)
    assert episode_files(window) == []
    assert window.episode_table.rowCount() == 0
    assert [e.name for e in trash_entries(window.out_dir)] == [path.name]
    assert f"moved {path.name} to the trash" in window.status_label.text()
    assert not window.discard_button.isEnabled()  # disarmed: a second click reaches no other episode

    QTest.mouseClick(window.undo_button, LEFT)
    assert episode_files(window) == [path] and path.read_bytes() == data
    assert window.episode_table.names() == [path.name] and trash_entries(window.out_dir) == []
    assert f"restored {path.name}" in window.status_label.text() and not window.undo_button.isEnabled()

    window.robot_combo.setCurrentText("allegro")  # another robot: Discard no longer reaches the franka episode
    assert not window.discard_button.isEnabled()
    assert make_window("scripted").seed_spin.value() == seed + 1  # a new launch: the folder's next seed


def test_the_picked_format_and_frame_codec_are_used(make_window: Callable[..., MainWindow]) -> None:
    window = make_window("scripted")
    window.format_combo.setCurrentText("zarr")
    window.codec_combo.setCurrentIndex(window.codec_combo.findData("jpeg"))
    QTest.mouseClick(window.record_button, LEFT)
    assert not window.codec_combo.isEnabled()
    wait_until(lambda: not window.recording, 30)
    [path] = sorted(window.out_dir.glob("episode_*.zarr"))
    with open_episode(path) as reader:
        assert all(reader.is_jpeg(cam) for cam in reader.camera_names)
        assert reader.frame(reader.camera_names[0], -1).dtype == np.uint8
    assert window.episode_table.names() == [path.name]


class DiesAfter(SyntheticCamera):
    """A synthetic camera whose driver raises after `n` frames, like a USB camera pulled out."""

    def __init__(self, n: int) -> None:
        super().__init__(160, 120, fps=30.0)
        self.n = n

    def _read(self) -> Capture | None:
        if self.status().frames >= self.n:
            raise OSError("[Errno 19] No such device")
        return super()._read()


def test_real_cameras_are_shown_recorded_and_a_dead_one_is_reported(make_window: Callable[..., MainWindow]) -> None:
    # Handed over unstarted: the rig's process starts them.
    window = make_window("scripted", cameras={"usb": SyntheticCamera(160, 120, fps=30.0), "pulled": DiesAfter(20)})
    assert list(window.camera_views) == ["front", "wrist", "usb", "pulled"]
    views = [window.camera_views[name].size() for name in ("front", "wrist", "usb", "pulled")]
    assert len({view.height() for view in views}) == 1  # one height, each camera at its own aspect
    assert abs(views[2].width() / views[2].height() - 160 / 120) < 0.01
    assert sum(view.width() for view in views) <= CAMERA_ROW_PX + 4  # four cameras fit the row
    wait_until(lambda: window.camera_views["usb"].pixmap() is not None
               and not window.camera_views["usb"].pixmap().isNull(), 10)  # the preview shows its frame
    states: list = []
    texts: list[str] = []
    window.worker.live.connect(states.append)
    window.worker.live.connect(lambda _: texts.append(window.status_label.text()))
    QTest.mouseClick(window.record_button, LEFT)
    wait_until(lambda: not window.recording, 30)
    assert states[-1].camera_repeats["pulled"] > 0  # shown while recording, not only after
    assert any("camera pulled: no new frame on" in text for text in texts)
    [path] = episode_files(window)
    with open_episode(path) as reader:
        assert set(reader.camera_names) == {"front", "wrist", "usb", "pulled"}
        assert reader.frame("usb", -1).shape == (120, 160, 3)
        assert reader.camera_seq("pulled")[-1] == 19  # its last frame, repeated after it died
    status = window.status_label.text()
    assert f"saved {path.name}" in status and "camera pulled dead: OSError: [Errno 19] No such device" in status


def test_discard_while_recording_keeps_nothing(make_window: Callable[..., MainWindow]) -> None:
    window = make_window("scripted")
    QTest.mouseClick(window.record_button, LEFT)
    wait_until(lambda: window.live_steps > 0, 10)
    QTest.mouseClick(window.discard_button, LEFT)
    wait_until(lambda: not window.recording, 20)
    assert episode_files(window) == [] and window.episode_table.rowCount() == 0
    [trashed] = trash_entries(window.out_dir)
    assert f"moved {trashed.name} (" in window.status_label.text() and window.undo_button.isEnabled()


def test_closing_during_a_recording_keeps_the_episode(make_window: Callable[..., MainWindow]) -> None:
    window = make_window("keyboard")
    QTest.mouseClick(window.record_button, LEFT)
    wait_until(lambda: window.live_steps > 0, 10)
    QTest.qWait(200)
    window.close()
    assert not window.worker.alive
    [path] = episode_files(window)
    with EpisodeReader(path) as reader:
        assert reader.num_steps > 1 and reader.attrs["stopped_by"] == "operator"


def test_damaged_file_is_listed_as_an_error(make_window: Callable[..., MainWindow], tmp_path: Path) -> None:
    (tmp_path / "episodes").mkdir()
    (tmp_path / "episodes" / "episode_000000.h5").write_bytes(b"not hdf5")
    window = make_window("scripted")
    table = window.episode_table
    assert table.item(0, 1).text().startswith("ERROR")
    # a long error never widens the columns past the list: they fit the header and the episodes' cells
    assert table.columnWidth(1) < 150 and not table.horizontalScrollBar().isVisible()


def test_robot_picker_filters_tasks_and_rebuilds_the_rig(make_window: Callable[..., MainWindow]) -> None:
    window = make_window("scripted")
    window.robot_combo.setCurrentText("allegro")
    tasks = [window.task_combo.itemText(i) for i in range(window.task_combo.count())]
    assert tasks and all(name.startswith("allegro") for name in tasks)
    wait_until(lambda: window.ready, 20)
    assert window.rig_info.config.robot == "allegro"
    assert set(window.camera_views) == set(window.rig_info.cameras)
    window.device_combo.setCurrentText("keyboard")
    window.robot_combo.setCurrentText("franka")  # a second pick before the first build is done
    assert "engage" in window.controls_label.text()
    wait_until(lambda: window.ready, 20)
    assert (window.rig_info.config.robot, window.rig_info.config.device) == ("franka", "keyboard")


def test_window_renders_something(make_window: Callable[..., MainWindow]) -> None:
    window = make_window("keyboard")
    image = window.grab().toImage()
    assert not image.isNull() and image.width() > 800
    colours = {image.pixel(x, y) for x in range(0, image.width(), 23) for y in range(0, image.height(), 23)}
    assert len(colours) > 20  # widgets and a camera frame, not a blank fill


def test_run_app_without_pyqt6_names_the_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from ui.app import run_app

    monkeypatch.setitem(sys.modules, "PyQt6.QtWidgets", None)
    with pytest.raises(MissingDependencyError, match=r"teleop\[gui\]"):
        run_app(tmp_path)


def test_an_unwritable_folder_or_no_display_is_an_error_not_a_crash(capsys: pytest.CaptureFixture[str]) -> None:
    from teleop.cli import main
    from ui.app import check_display

    assert main(["gui", "--out", "/proc/nope"]) == 2
    assert "error: --out: cannot create the folder /proc/nope" in capsys.readouterr().err
    with pytest.raises(TeleopError, match="no display to open the window on .*xvfb-run"):
        check_display({})
    check_display({"QT_QPA_PLATFORM": "offscreen"})
    check_display({"WAYLAND_DISPLAY": "wayland-0"})


def test_a_device_option_is_set_in_the_window(make_window: Callable[..., MainWindow], tmp_path: Path) -> None:
    window = make_window("scripted")
    assert not window.device_option.isEnabled()  # the scripted operator takes no option
    window.device_combo.setCurrentText("replay")
    wait_until(lambda: "cannot build the rig" in window.status_label.text(), 20)
    assert "needs a trace file as its option (the device option in the app" in window.status_label.text()
    assert window.device_option.isEnabled() and window.device_option.placeholderText() == "trace file (.jsonl)"
    window.device_option.setText(str(tmp_path / "missing.jsonl"))
    window.device_option.editingFinished.emit()
    wait_until(lambda: "missing.jsonl" in window.status_label.text(), 20)  # the option reached the device
    assert window._requested is not None and window._requested.device_arg == str(tmp_path / "missing.jsonl")
    window.device_combo.setCurrentText("scripted")  # another device: its own option, none here
    assert window.device_option.text() == "" and not window.device_option.isEnabled()
    wait_until(lambda: window.ready, 20)


def test_a_take_is_labelled_kept_or_recorded_again_from_the_keyboard(make_window: Callable[..., MainWindow]) -> None:
    window = make_window("scripted")
    panel = window.take_panel
    assert not panel.keep_button.isEnabled() and "0 kept" in panel.tally.text()
    QTest.mouseClick(window.record_button, LEFT)
    wait_until(lambda: not window.recording, 30)
    [first] = episode_files(window)
    assert panel.take is not None and panel.take.path == first
    assert panel.outcome.currentText() == "success"  # the task's own check
    assert panel.instruction.text() == window.rig_info.instruction
    panel.outcome.setCurrentText("failure")  # the operator saw it go wrong
    panel.instruction.setText("touch the red ball gently")
    panel.note.setText("bumped the table")
    window.setFocus()
    QTest.keyClick(window, Qt.Key.Key_K)
    with EpisodeReader(first) as reader:
        assert reader.success is False and reader.meta.instruction == "touch the red ball gently"
        assert reader.attrs["note"] == "bumped the table"
        reader.verify()  # sealed again
    assert panel.take is None and "1 kept (0 successful), 0 discarded" in panel.tally.text()

    seed = window.seed_spin.value()
    QTest.mouseClick(window.record_button, LEFT)
    wait_until(lambda: not window.recording, 30)
    [second] = [p for p in episode_files(window) if p != first]
    QTest.keyClick(window, Qt.Key.Key_R)  # the same scene again; the take goes to the trash
    assert window.recording and window.seed_spin.value() == seed
    wait_until(lambda: not window.recording, 30)
    assert [e.name for e in trash_entries(window.out_dir)] == [second.name]
    third = panel.take.path
    with EpisodeReader(third) as reader:
        assert reader.meta.seed == seed and reader.success is True
    QTest.keyClick(window, Qt.Key.Key_D)
    assert not third.exists() and "1 kept (0 successful), 2 discarded" in panel.tally.text()


def test_an_episode_deleted_in_review_comes_back_with_undo(make_window: Callable[..., MainWindow]) -> None:
    window = make_window("scripted")
    QTest.mouseClick(window.record_button, LEFT)
    wait_until(lambda: not window.recording, 30)
    [path] = episode_files(window)
    data = path.read_bytes()
    review = window.review(path.name)
    assert review is not None and review.isVisible() and review.num_steps > 10
    review.delete()
    assert episode_files(window) == [] and window.episode_table.rowCount() == 0
    assert window.take_panel.take is None and window.undo_button.isEnabled()
    QTest.mouseClick(window.undo_button, LEFT)
    assert episode_files(window) == [path] and path.read_bytes() == data
    assert window.review("episode_999999.h5") is None and "cannot review" in window.status_label.text()
    QTest.mouseClick(window.export_button, LEFT)
    assert window.export_dialog is not None and window.export_dialog.isVisible()
    assert window.export_dialog.directory == window.out_dir
    window.export_dialog.close()
    QTest.mouseClick(window.train_button, LEFT)
    assert window.train_dialog is not None and window.train_dialog.directory == window.out_dir
    window.train_dialog.review_requested.emit(path)  # a rollout to review: any episode's path
    assert window.reviews[-1].path == path and window.reviews[-1].isVisible()
    window.train_dialog.close()


def test_after_keep_the_next_take_starts_by_itself_after_the_reset_pause(
        make_window: Callable[..., MainWindow]) -> None:
    window = make_window("scripted")
    window.take_panel.reset_spin.setValue(0.3)
    QTest.mouseClick(window.record_button, LEFT)
    wait_until(lambda: not window.recording, 30)
    seed = window.seed_spin.value()
    window.keep_take()
    assert "the next take starts in 0.3 s" in window.status_label.text() and not window.recording
    wait_until(lambda: window.recording, 5)  # no button pressed
    assert window._take_seed == seed
    wait_until(lambda: not window.recording, 30)
    window.keep_take()
    QTest.keyClick(window, Qt.Key.Key_Escape)
    assert "next take cancelled" in window.status_label.text()
    QTest.qWait(500)
    assert not window.recording and len(episode_files(window)) == 2


def test_the_rig_runs_in_its_own_process_and_the_window_plots_targets_and_ticks(
        make_window: Callable[..., MainWindow]) -> None:
    window = make_window("scripted")
    assert window.worker.pid not in (None, os.getpid()) and window.worker.alive
    assert window.device_label.text().startswith("device: scripted ready")
    QTest.mouseClick(window.record_button, LEFT)
    wait_until(lambda: not window.recording, 30)
    [path] = episode_files(window)
    with open_episode(path) as reader:
        steps = reader.num_steps
    drawn = [curve.getData()[1] for curve in window.joint_plot.target_curves]
    assert all(y is not None and len(y) > 5 for y in drawn[:7])  # the arm's seven joint targets, dashed
    assert all(y is None or len(y) == 0 for y in drawn[7:])  # the fingers have no joint target
    measured = [curve.getData()[1][-1] for curve in window.joint_plot.curves[:7]]
    np.testing.assert_allclose(measured, [y[-1] for y in drawn[:7]], atol=0.1)  # at the end the arm holds its target
    ticks = window.tick_plot.shown
    assert 5 < len(ticks) <= steps and np.all(ticks > 0) and window.tick_plot.period_ms == 50.0


def test_record_waits_for_a_device_that_is_not_ready_and_says_why(app: QApplication, tmp_path: Path) -> None:
    pytest.importorskip("inputs")
    window = MainWindow(tmp_path / "episodes", device="gamepad")
    try:
        window.device_option.setText("7")  # no machine has an eighth pad
        window.device_option.editingFinished.emit()
        wait_until(lambda: window.device_status is not None and window.rig_info is not None
                   and window.rig_info.config.device_arg == "7", 20)
        assert not window.device_status.connected and not window.record_button.isEnabled()
        text = window.device_label.text()
        assert "gamepad not ready: no gamepad found" in text and "--device" not in text and "Device list" in text
        window.device_combo.setCurrentText("keyboard")
        wait_until(lambda: window.ready, 20)
        assert window.record_button.isEnabled() and "keyboard ready" in window.device_label.text()
        QTest.mouseClick(window.check_button, LEFT)  # checks again
        assert not window.record_button.isEnabled() and "checking" in window.device_label.text()
        wait_until(lambda: window.ready, 20)
    finally:
        window.close()


def test_a_rig_process_that_dies_is_reported_and_the_window_stays(make_window: Callable[..., MainWindow]) -> None:
    window = make_window("scripted")
    QTest.mouseClick(window.record_button, LEFT)
    wait_until(lambda: window.live_steps > 0, 10)
    os.kill(window.worker.pid, 9)
    wait_until(lambda: not window.recording, 10)
    assert "the rig's process ended unexpectedly (exit code -9)" in window.status_label.text()
    assert not window.record_button.isEnabled() and window.isVisible()


def test_the_camera_picker_adds_found_cameras_and_refuses_a_bad_spec(make_window: Callable[..., MainWindow],
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from recorder.cameras import FoundCamera

    window = make_window("scripted")
    picker = window.camera_picker
    pid = window.worker.pid
    picker.field.setText("usb")  # no source
    picker.field.editingFinished.emit()
    assert "cameras not changed" in window.status_label.text() and "NAME=SOURCE" in window.status_label.text()
    assert window.worker.pid == pid  # the rig is left as it was
    found = [FoundCamera("/dev/video1", "/dev/video1", problem="OpenCV cannot open it"),
             FoundCamera("synthetic", "a test pattern", 160, 120, 30.0)]
    monkeypatch.setattr("ui.camera_picker.find_cameras", lambda probe_s: found)
    picker.field.setText("")
    QTest.mouseClick(picker.find_button, LEFT)
    wait_until(lambda: picker.menu is not None, 10)
    [action] = picker.menu.actions()  # the camera OpenCV cannot open is not offered
    assert action.text() == "synthetic: a test pattern, 160x120 at 30 Hz"
    action.trigger()
    assert picker.field.text() == "cam1=synthetic"
    wait_until(lambda: window.ready and "cam1" in window.camera_views, 30)
    assert window.worker.pid != pid
    QTest.mouseClick(window.record_button, LEFT)
    wait_until(lambda: not window.recording, 30)
    [path] = episode_files(window)
    with open_episode(path) as reader:
        assert "cam1" in reader.camera_names


def test_calibrating_the_controller_from_the_window(app: QApplication, tmp_path: Path) -> None:
    from test_calibrate import R_BASE_DEVICE, _angle_deg
    from test_calibrate import _trace as vive_trace

    from kinematics.calibration import load_calibration

    window = MainWindow(tmp_path / "episodes", device="scripted")
    try:
        wait_until(lambda: window.ready, 20)
        assert not window.calibrate_button.isEnabled()  # the scripted operator gives no controller pose
        window.device_combo.setCurrentText("replay")
        window.device_option.setText(str(vive_trace(tmp_path / "point.trace.jsonl", "point")))
        window.device_option.editingFinished.emit()
        wait_until(lambda: window.ready, 20)
        assert window.calibrate_button.isEnabled() and window.rig_info.config.calibration is None
        assert window.calibration_label.text().startswith("none")
        dialog = window.open_calibrate()
        QTest.mouseClick(dialog.start_button, LEFT)
        wait_until(lambda: not dialog.running, 20)
        assert "saved calibration.json" in dialog.result_label.text(), dialog.result_label.text()
        assert "grip" in dialog.prompts.text()  # the routine's instructions, shown as they came
        path = window.out_dir / "calibration.json"
        assert _angle_deg(load_calibration(path).R_base_device, R_BASE_DEVICE) < 2.0
        wait_until(lambda: window.ready and window.rig_info.config.calibration == path, 20)  # used from now on
        assert window.calibration_label.text() == "calibration.json"
        dialog.close()
    finally:
        window.close()


def test_a_real_robot_from_the_window_and_its_emergency_stop(app: QApplication, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    # The xArm SDK faked at XArmAPI (tests/test_robots.py), where the rig's process imports it from.
    sdk = tmp_path / "sdk" / "xarm"
    sdk.mkdir(parents=True)
    (sdk / "__init__.py").write_text("")
    (sdk / "wrapper.py").write_text("from test_robots import FakeXArmAPI as XArmAPI\n")
    monkeypatch.syspath_prepend(str(tmp_path / "sdk"))
    window = MainWindow(tmp_path / "episodes", robot="xarm7", device="keyboard", real="192.168.1.185",
                        cameras={"usb": SyntheticCamera(160, 120, fps=30.0)})
    try:
        window.show()
        wait_until(lambda: window.ready, 30)
        assert window.rig_info.config.real == "192.168.1.185" and list(window.camera_views) == ["usb"]
        QTest.mouseClick(window.record_button, LEFT)
        wait_until(lambda: window.live_steps > 5, 10)
        statuses: list = []
        window.worker.robot_status.connect(statuses.append)
        QTest.keyClick(window, Qt.Key.Key_F12)
        assert "EMERGENCY STOP" in window.status_label.text() and window.stopped
        wait_until(lambda: bool(statuses), 10)  # the robot itself, in the rig's process, is stopped
        assert not statuses[0].ok and statuses[0].message.startswith("EMERGENCY STOP: commands are ignored")
        wait_until(lambda: not window.recording, 10)  # the take ends, and is kept
        assert not window.record_button.isEnabled() and window.estop_button.text().startswith("Release")
        [path] = episode_files(window)
        with open_episode(path) as reader:
            assert reader.meta.robot == "xarm7" and reader.camera_names == ["usb"] and reader.num_steps > 5
        window.estop_button.click()  # released
        assert not window.stopped and window.record_button.isEnabled()
    finally:
        window.close()
