"""The main window: pick robot, task and device; watch the cameras; record, stop, discard; browse episodes."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PyQt6.QtCore import QEvent, QObject, Qt, QTimer
from PyQt6.QtGui import QCloseEvent, QKeyEvent, QKeySequence, QShortcut
from PyQt6.QtWidgets import (
    QApplication,
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLayout,
    QLineEdit,
    QMainWindow,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from devices.keyboard import KEY_MAP
from devices.status import DeviceStatus
from kinematics.robots import ROBOTS
from recorder.cameras import CameraSource
from recorder.episodes import next_seed, scan_episodes
from recorder.labels import label_episode
from recorder.trash import TrashEntry, move_to_trash, restore
from teleop.backends import BACKENDS as DEVICES
from teleop.backends import source_device
from teleop.calibrate import pose_devices
from teleop.errors import TeleopError
from teleop.recording import RecordedEpisode
from teleop.rig import RigConfig
from teleop.robot import RobotStatus
from teleop.session import REPEATED_FRACTION, SLOW_FRACTION, SUCCESS_HOLD_S, SessionConfig
from teleop.tasks import DEFAULT_TASK, TASKS
from ui.calibrate_dialog import CALIBRATION_FILE, CalibrateDialog
from ui.camera_picker import CameraPicker
from ui.keys import key_name
from ui.review import ReviewWindow
from ui.rig_process import LiveState, RigInfo, RigProcess
from ui.take import Take, TakePanel
from ui.widgets import (
    CameraView,
    EpisodeTable,
    JointPlot,
    StatusLabel,
    TickPlot,
    key_map_html,
    monospace_font,
    state_html,
)

if TYPE_CHECKING:
    from ui.export_dialog import ExportDialog
    from ui.train_dialog import TrainDialog

HUMAN_MAX_DURATION_S = 300.0  # a person ends the episode with Stop; this only caps a forgotten recording
CAMERA_SCALE = 2.0
CAMERA_ROW_PX = 1140  # widest the camera views may be together; more cameras are shown smaller


def session_config(device: str) -> SessionConfig:
    """The scripted operator ends its episode on success; a person ends theirs with Stop."""
    if device == "scripted":
        return SessionConfig(stop_on_success_s=SUCCESS_HOLD_S)
    return SessionConfig(max_duration_s=HUMAN_MAX_DURATION_S, stop_on_success_s=None)


def in_window_terms(text: str) -> str:
    """A message written for the command line, with its options named as the window shows them."""
    for flag, field in (("with --device-arg", "in the Option field"), ("--device-arg", "the Option field"),
                        ("with --device", "from the Device list"), ("--device ", "the device ")):
        text = text.replace(flag, field)
    return text


def tasks_of(robot: str) -> list[str]:
    """Names of the tasks for one robot, its default task first."""
    names = sorted(name for name, cls in TASKS.items() if cls.robot == robot)
    default = DEFAULT_TASK.get(robot)
    return sorted(names, key=lambda name: name != default)


class MainWindow(QMainWindow):
    """Records demonstrations into `out_dir`, one HDF5 file (or zarr directory) per episode.

    The rig lives in a process of its own (ui.rig_process: built, previewed and recorded there, so the window
    never slows the control loop); the window sends it requests and shows the RigInfo and LiveState snapshots
    it sends back. With the keyboard device, key events anywhere in the app go to the device while a recording
    runs. `cameras` are real cameras, not started: the rig's process starts and stops them. `real` is the address
    of a real robot to drive instead of the simulator (teleop.hardware.connect_robot).
    """

    def __init__(self, out_dir: Path, robot: str = "franka", task: str | None = None,
                 device: str = "scripted", cameras: Mapping[str, CameraSource] | None = None,
                 real: str | None = None) -> None:
        super().__init__()
        self.out_dir = Path(out_dir)
        self.cameras = dict(cameras or {})  # real cameras, recorded beside the simulator's
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.rig_info: RigInfo | None = None
        self.device_status: DeviceStatus | None = None  # the last check of the rig's device
        self._requested: RigConfig | None = None
        self.recording = False
        self.live_steps = 0  # ticks of the running recording so far, as last reported
        self.stopped = False  # an emergency stop is on, until released
        self._gives_pose = False  # whether the picked device gives a controller pose (calibration applies)
        self.camera_views: dict[str, CameraView] = {}
        self.joint_plot: JointPlot | None = None
        self._discard_requested = False
        self._last_path: Path | None = None  # the episode this session saved last, until it is discarded
        self._trashed: TrashEntry | None = None  # the episode discarded last, until Undo brings it back
        self._take_seed = 0  # the seed of the take being recorded
        self.reviews: list[ReviewWindow] = []  # open review windows
        self.export_dialog: ExportDialog | None = None
        self.calibrate_dialog: CalibrateDialog | None = None
        self.train_dialog: TrainDialog | None = None
        self.setWindowTitle(f"teleop: record demonstrations into {self.out_dir}")
        self._start_worker()
        self._build_ui()
        self.next_take = QTimer(self)  # the reset pause after Keep, then the next take
        self.next_take.setSingleShot(True)
        self.next_take.timeout.connect(self._start_next_take)
        self._shortcuts: dict[str, QShortcut] = {}
        for key, slot in (("K", self.keep_take), ("R", self.rerecord), ("D", self.discard),
                          ("Esc", self.cancel_next_take), ("F12", self.emergency_stop)):
            self._shortcuts[key] = QShortcut(QKeySequence(key), self)
            self._shortcuts[key].activated.connect(slot)
        self.seed_spin.setValue(next_seed(self.out_dir))  # a new scene, never one recorded in this folder before
        self.real_field.setText(real or "")
        self._select_initial(robot, task, device)
        self.refresh_episodes()
        app = QApplication.instance()
        if app is not None:
            app.installEventFilter(self)

    # --- layout ----------------------------------------------------------------------------------------

    def _build_ui(self) -> None:
        central = QWidget()
        layout = QHBoxLayout(central)
        layout.addWidget(self._left_panel())
        layout.addLayout(self._right_panel(), stretch=1)
        self.setCentralWidget(central)
        self.resize(1380, 860)

    def _left_panel(self) -> QWidget:
        panel = QWidget()
        panel.setFixedWidth(340)
        column = QVBoxLayout(panel)
        column.setContentsMargins(0, 0, 0, 0)
        column.addWidget(self._setup_box())
        column.addWidget(self._record_box())
        self.take_panel = TakePanel()
        self.take_panel.keep_button.clicked.connect(self.keep_take)
        self.take_panel.rerecord_button.clicked.connect(self.rerecord)
        column.addWidget(self.take_panel)
        column.addWidget(self._controls_box())
        column.addStretch(1)
        return panel

    def _setup_box(self) -> QGroupBox:
        box = QGroupBox("Setup")
        form = QFormLayout(box)
        self.robot_combo = QComboBox()
        self.robot_combo.addItems(list(ROBOTS))
        self.task_combo = QComboBox()
        self.device_combo = QComboBox()
        self.device_combo.addItems(list(DEVICES))
        self.seed_spin = QSpinBox()
        self.seed_spin.setRange(0, 2**31 - 1)
        self.seed_spin.setToolTip("Seed of the task's initial conditions: one more than the folder's last at the "
                                  "start, and up by one after each episode")
        form.addRow("Robot", self.robot_combo)
        form.addRow("Task", self.task_combo)
        self.device_option = QLineEdit()
        self.device_option.setToolTip("The device's one option: a trace file for replay, a pad index, a camera "
                                      "index or video, a controller's hand or serial; Enter applies it")
        form.addRow("Device", self.device_combo)
        form.addRow("Option", self.device_option)
        form.addRow("Seed", self.seed_spin)
        self.camera_picker = CameraPicker(self.cameras)
        self.camera_picker.changed.connect(self.set_cameras)
        self.camera_picker.problem.connect(lambda text: self.status_label.say(text, error=True))
        form.addRow("Cameras", self.camera_picker)
        self.real_field = QLineEdit()
        self.real_field.setPlaceholderText("none: the simulator")
        self.real_field.setToolTip("Drive the real robot at this address instead of the simulator (an arm's IP, "
                                   "the hand's CAN channel); teleop robots lists the drivers; Enter applies it")
        self.real_field.editingFinished.connect(self._on_real_edited)
        form.addRow("Real robot", self.real_field)
        calibration_row = QHBoxLayout()
        self.calibration_label = QLabel()
        self.calibration_label.setToolTip("The rotation from a VR controller's tracking frame to the robot base, "
                                          f"kept in the folder as {CALIBRATION_FILE}")
        self.calibrate_button = QPushButton("Calibrate ...")
        self.calibrate_button.setToolTip("Measure it with the controller (as teleop calibrate); only for devices "
                                         "that give a controller pose")
        self.calibrate_button.clicked.connect(self.open_calibrate)
        calibration_row.addWidget(self.calibration_label, stretch=1)
        calibration_row.addWidget(self.calibrate_button)
        form.addRow("Calibration", calibration_row)
        self.robot_combo.currentTextChanged.connect(self._on_robot_changed)
        self.task_combo.currentTextChanged.connect(lambda _: self.rebuild_rig())
        self.device_combo.currentTextChanged.connect(self._on_device_changed)
        self.device_option.editingFinished.connect(self._on_option_edited)
        self.seed_spin.valueChanged.connect(self._request_preview)
        self.format_combo = QComboBox()
        self.format_combo.addItems(["hdf5", "zarr"])
        self.format_combo.setToolTip("One .h5 file or one .zarr directory per episode (zarr needs the zarr extra)")
        self.codec_combo = QComboBox()
        self.codec_combo.addItem("lossless", "lossless")
        self.codec_combo.addItem("JPEG (about 10x smaller)", "jpeg")
        self.codec_combo.setToolTip("How colour frames are stored; JPEG needs pip install 'teleop[jpeg]'")
        form.addRow("Format", self.format_combo)
        form.addRow("Frames", self.codec_combo)
        return box

    def _record_box(self) -> QGroupBox:
        box = QGroupBox("Recording")
        column = QVBoxLayout(box)
        self.instruction_label = QLabel()
        self.instruction_label.setWordWrap(True)
        column.addWidget(self.instruction_label)
        buttons = QHBoxLayout()
        self.record_button = self._button("Record", "#2e7d32", self.record)
        self.stop_button = self._button("Stop", "#555555", self.stop)
        self.discard_button = self._button("Discard", "#b23b3b", self.discard)
        self.discard_button.setToolTip("Move the running or the last saved episode to the folder's trash")
        self.undo_button = self._button("Undo", "#555555", self.undo_discard)
        self.undo_button.setToolTip("Bring the last discarded episode back from the trash")
        for button in (self.record_button, self.stop_button, self.discard_button, self.undo_button):
            buttons.addWidget(button)
        column.addLayout(buttons)
        self.estop_button = QPushButton("EMERGENCY STOP [F12]")
        self.estop_button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.estop_button.setMinimumHeight(40)
        self.estop_button.setStyleSheet("QPushButton { font-weight: bold; color: white; background: #c62828; }")
        self.estop_button.setToolTip("Stop the robot at once (a real robot: its SDK's hardest stop) and end the "
                                     "take; the robot ignores commands until Release")
        self.estop_button.clicked.connect(self.emergency_stop)
        column.addWidget(self.estop_button)
        device_row = QHBoxLayout()
        self.device_label = StatusLabel("device: not checked yet")
        self.device_label.setToolTip("Checked after each change of robot, task or device: connected, sampling, "
                                     "and if not, why; Record waits for a ready device")
        self.check_button = QPushButton("Check")
        self.check_button.setToolTip("Connect the device again and read it for half a second")
        self.check_button.clicked.connect(self.check_device)
        device_row.addWidget(self.device_label, stretch=1)
        device_row.addWidget(self.check_button)
        column.addLayout(device_row)
        self.status_label = StatusLabel("idle")
        self.status_label.setMinimumHeight(60)
        self.status_label.setAlignment(Qt.AlignmentFlag.AlignTop)
        column.addWidget(self.status_label)
        return box

    def _button(self, text: str, color: str, slot: Callable[[], None]) -> QPushButton:
        button = QPushButton(text)
        button.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # space must reach the device, never click a button
        button.setMinimumHeight(34)
        button.setStyleSheet(f"QPushButton {{ font-weight: bold; color: {color}; }} "
                             "QPushButton:disabled { color: #9e9e9e; }")
        button.clicked.connect(slot)
        return button

    def _controls_box(self) -> QGroupBox:
        self.controls_box = QGroupBox("Operator controls")
        column = QVBoxLayout(self.controls_box)
        self.controls_label = QLabel()
        self.controls_label.setWordWrap(True)
        self.controls_label.setTextFormat(Qt.TextFormat.RichText)
        column.addWidget(self.controls_label)
        return self.controls_box

    def _right_panel(self) -> QVBoxLayout:
        column = QVBoxLayout()
        self.cameras_box = QGroupBox("Cameras")
        self.cameras_row = QHBoxLayout(self.cameras_box)
        column.addWidget(self.cameras_box)
        bottom = QHBoxLayout()
        self.plot_box = QGroupBox("Joint positions (solid) and targets (dashed), last 5 s; each tick's time")
        plot_row = QHBoxLayout(self.plot_box)
        self._plot_column = QVBoxLayout()
        self.tick_plot = TickPlot(1000.0 / SessionConfig().rate_hz)
        self.tick_plot.setFixedHeight(110)
        self.tick_plot.setToolTip("How long each of the last ticks took; red: longer than the control period")
        self._plot_column.addWidget(self.tick_plot)
        plot_row.addLayout(self._plot_column, stretch=1)
        self.state_label = QLabel()
        self.state_label.setFont(monospace_font())
        self.state_label.setAlignment(Qt.AlignmentFlag.AlignTop)
        self.state_label.setMinimumWidth(230)
        self.state_label.setTextFormat(Qt.TextFormat.RichText)
        plot_row.addWidget(self.state_label)
        bottom.addWidget(self.plot_box, stretch=5)
        episodes_box = QGroupBox(f"Episodes in {self.out_dir}")
        episodes_column = QVBoxLayout(episodes_box)
        self.episode_table = EpisodeTable()
        self.episode_table.setToolTip("Double-click an episode to review, trim, relabel or delete it")
        self.episode_table.cellDoubleClicked.connect(lambda row, _: self.review(self.episode_table.names()[row]))
        episodes_column.addWidget(self.episode_table)
        self.export_button = QPushButton("Export dataset ...")
        self.export_button.setToolTip("LeRobot, robomimic or diffusion-policy, as teleop export")
        self.export_button.clicked.connect(self.open_export)
        self.train_button = QPushButton("Train policy ...")
        self.train_button.setToolTip("Behaviour cloning on these episodes, then rollouts on test scenes, as "
                                     "teleop train and teleop eval")
        self.train_button.clicked.connect(self.open_train)
        folder_buttons = QHBoxLayout()
        folder_buttons.addWidget(self.export_button)
        folder_buttons.addWidget(self.train_button)
        episodes_column.addLayout(folder_buttons)
        bottom.addWidget(episodes_box, stretch=4)
        column.addLayout(bottom, stretch=1)
        return column

    # --- worker --------------------------------------------------------------------------------------

    def set_cameras(self, cameras: Mapping[str, CameraSource]) -> None:
        """Record these real cameras (not started) from now on: the rig's process starts again with them."""
        if self.recording:
            return
        self.cameras = dict(cameras)
        self.worker.shutdown()
        self._start_worker()
        self.rebuild_rig()

    def _start_worker(self) -> None:
        self.worker = RigProcess(self.out_dir, cameras=self.cameras)
        self.worker.built.connect(self._on_built)
        self.worker.build_failed.connect(self._on_build_failed)
        self.worker.device_checked.connect(self._on_device_checked)
        self.worker.robot_status.connect(self._on_robot_status)
        self.worker.previewed.connect(self._on_previewed)
        self.worker.live.connect(self._on_live)
        self.worker.recorded.connect(self._on_recorded)
        self.worker.failed.connect(self._on_failed)
        self.worker.died.connect(self._on_died)

    @property
    def ready(self) -> bool:
        """Whether a rig is built for the current picks, its device is ready and nothing records."""
        return (self.rig_info is not None and not self.recording and self.device_status is not None
                and self.device_status.connected)

    def emergency_stop(self) -> None:
        """Stop the robot at once and end the running take (kept); press again to release the stop."""
        if self.stopped:
            self.stopped = False
            self.worker.release()
            self.estop_button.setText("EMERGENCY STOP [F12]")
            self.status_label.say("emergency stop released: the robot moves again, slowly at first")
        else:
            self.stopped = True
            self.worker.emergency_stop()
            self.estop_button.setText("Release the stop [F12]")
            self.stop()
            self.status_label.say("EMERGENCY STOP: the robot ignores every command until you release the stop",
                                  error=True)
        self._update_buttons()

    def _on_robot_status(self, status: RobotStatus) -> None:
        if status.message:
            self.status_label.say(f"robot: {status.message}", error=not status.ok)

    def _on_real_edited(self) -> None:
        if self._requested is None or (self._requested.real or "") != self.real_field.text().strip():
            self.rebuild_rig()

    def check_device(self) -> None:
        """Have the rig's process check the device again (connect, read, report)."""
        if self.rig_info is not None and not self.recording:
            self.device_status = None
            self.device_label.say(f"device: checking {escape(self.rig_info.config.device)} ...")
            self._update_buttons()
            self.worker.check_device()

    # --- pickers and rig -------------------------------------------------------------------------------

    def _select_initial(self, robot: str, task: str | None, device: str) -> None:
        for combo in (self.robot_combo, self.task_combo, self.device_combo):
            combo.blockSignals(True)
        self.robot_combo.setCurrentText(robot)
        self._fill_tasks(robot)
        if task is not None:
            self.task_combo.setCurrentText(task)
        self.device_combo.setCurrentText(device)
        for combo in (self.robot_combo, self.task_combo, self.device_combo):
            combo.blockSignals(False)
        self._show_option(device)
        self.rebuild_rig()

    def _fill_tasks(self, robot: str) -> None:
        self.task_combo.clear()
        self.task_combo.addItems(tasks_of(robot))

    def _on_device_changed(self, device: str) -> None:
        self.device_option.blockSignals(True)
        self.device_option.clear()
        self.device_option.blockSignals(False)
        self._show_option(device)
        self.rebuild_rig()

    def _show_option(self, device: str) -> None:
        option = DEVICES[device].option
        self.device_option.setPlaceholderText(option or "none")
        self.device_option.setEnabled(option is not None and not self.recording)

    def _on_option_edited(self) -> None:
        if self._requested is None or (self._requested.device_arg or "") != self.device_option.text().strip():
            self.rebuild_rig()

    def _on_robot_changed(self, robot: str) -> None:
        self.task_combo.blockSignals(True)
        self._fill_tasks(robot)
        self.task_combo.blockSignals(False)
        self.rebuild_rig()

    def rebuild_rig(self) -> None:
        """Have the worker close its rig and build one for the picked robot, task and device."""
        if self.recording:
            return
        device = self.device_combo.currentText()
        config = RigConfig(robot=self.robot_combo.currentText(), task=self.task_combo.currentText() or None,
                           device=device, session=session_config(device),
                           device_arg=self.device_option.text().strip() or None,
                           real=self.real_field.text().strip() or None)
        self._gives_pose = self._device_gives_pose()
        calibration = self.out_dir / CALIBRATION_FILE
        if self._gives_pose and calibration.exists():
            config = dataclasses.replace(config, calibration=calibration)
        self.calibration_label.setText(CALIBRATION_FILE if config.calibration else
                                       "none (tracking frame = robot base)" if self._gives_pose else
                                       f"not used by {device}")
        self.rig_info = None
        self.device_status = None
        self._requested = config
        self._last_path = None  # Discard never reaches an episode of another robot, task or device
        where = f"the real {config.robot} at {config.real}" if config.real else config.robot
        self.status_label.say(f"loading {where} / {config.task_name} ..." if not config.real else
                              f"connecting to {where} ...")
        self._show_controls(device)
        self._update_buttons()
        self.worker.build(config)

    def _on_built(self, info: RigInfo) -> None:
        if info.config != self._requested:  # superseded by a later pick; that build follows
            return
        self.rig_info = info
        self._make_views(info)
        self.status_label.say("built: checking the device ...")
        self.device_label.say(f"device: checking {escape(info.config.device)} ...")
        self._update_buttons()

    def _on_device_checked(self, status: DeviceStatus) -> None:
        if self.rig_info is None:
            return
        self.device_status = status
        name = self.rig_info.config.device
        if status.connected:
            rate = f", {status.sample_rate_hz:.0f} samples/s" if status.sample_rate_hz else ""
            self.device_label.say(f"device: {name} ready{rate}")
            self.status_label.say("ready: press Record")
        else:
            self.device_label.say(f"device: {name} not ready: {in_window_terms(status.reason)}", error=True)
            self.status_label.say("Record waits for the device: fix what the line above says, then press Check",
                                  error=True)
        self._update_buttons()
        self._request_preview()

    def _on_build_failed(self, message: str) -> None:
        self.rig_info = None
        self.device_label.say("device: no rig")
        _clear_layout(self.cameras_row)
        self.camera_views = {}
        self.status_label.say(f"cannot build the rig: {in_window_terms(message)}", error=True)
        self._update_buttons()

    def _make_views(self, info: RigInfo) -> None:
        _clear_layout(self.cameras_row)
        # Every view has the same height: the simulator's images at CAMERA_SCALE, unless the row would be too wide.
        aspects = sum(width / height for width, height in info.camera_sizes.values())
        shown_height = min(info.image_size[1] * CAMERA_SCALE, CAMERA_ROW_PX / aspects)
        self.camera_views = {name: CameraView(*info.camera_sizes[name], shown_height / info.camera_sizes[name][1])
                             for name in info.cameras}
        for name, view in self.camera_views.items():
            cell = QVBoxLayout()
            title = QLabel(name)
            title.setAlignment(Qt.AlignmentFlag.AlignCenter)
            cell.addWidget(title)
            cell.addWidget(view)
            self.cameras_row.addLayout(cell)
        self.cameras_row.addStretch(1)
        if self.joint_plot is not None:
            self.joint_plot.setParent(None)
            self.joint_plot.deleteLater()
        self.joint_plot = JointPlot(info.joint_names)
        self._plot_column.insertWidget(0, self.joint_plot, stretch=1)
        self.tick_plot.set_period(1000.0 / info.config.session.rate_hz)
        self.instruction_label.setText(f"<b>Task:</b> {escape(info.instruction)}")

    def _request_preview(self) -> None:
        if self.rig_info is not None and not self.recording:
            self.worker.preview(self.seed_spin.value())

    def _on_previewed(self, state: LiveState) -> None:
        if self.recording:
            return
        self._show_state(state)  # the joint plot keeps the last take until the next one starts

    def _show_state(self, state: LiveState) -> None:
        for name, rgb in state.frames.items():
            if name in self.camera_views:
                self.camera_views[name].show_rgb(rgb)
        if self.rig_info is not None:
            self.state_label.setText(state_html(self.rig_info.joint_names, state.joint_pos, state.ee_pos,
                                                state.engaged))

    def _show_controls(self, device: str) -> None:
        if device == "keyboard":
            self.controls_box.setTitle("Keyboard controls (while recording)")
            self.controls_label.setText(key_map_html(KEY_MAP))
        elif device == "scripted":
            self.controls_box.setTitle("Operator")
            self.controls_label.setText(
                "The scripted operator drives the robot by itself; the episode ends "
                f"{SUCCESS_HOLD_S:g} s after the task succeeds.")
        else:
            self.controls_box.setTitle("Operator")
            self.controls_label.setText(f"Operate the {escape(device)} device; press Stop to end.")

    # --- recording -------------------------------------------------------------------------------------

    def record(self) -> None:
        """Start recording one episode in the rig's process."""
        if not self.ready:
            return
        if self.take_panel.take is not None:  # the last take, kept with the labels shown
            self.keep_take()
        self.next_take.stop()
        self.recording = True
        self._take_seed = self.seed_spin.value()
        self._discard_requested = False
        self.live_steps = 0
        if self.joint_plot is not None:
            self.joint_plot.clear_history()
        self.tick_plot.show_ticks(np.zeros(0))
        self.status_label.say(f"recording (seed {self.seed_spin.value()}) ...")
        self._update_buttons()
        self.worker.record(self.seed_spin.value(), self.format_combo.currentText(), self.codec_combo.currentData())

    def stop(self) -> None:
        """End the running episode; it is finalised in the rig's process and then listed."""
        if self.recording:
            self.worker.request_stop()
            self.status_label.say("stopping: finalising the episode ...")

    def discard(self) -> None:
        """Move the episode being recorded, or else the last one saved, to the folder's trash (Undo restores it)."""
        if self.recording:
            self._discard_requested = True
            self.worker.request_stop()
            self.status_label.say("discarding the running episode ...")
            return
        if self._last_path is not None:
            self._to_trash(self._last_path, "")
            if self.take_panel.take is not None and self.take_panel.take.path == self._last_path:
                self.take_panel.close_take(kept=False)
        self._last_path = None
        self.refresh_episodes()
        self._update_buttons()

    def review(self, name: str) -> ReviewWindow | None:
        """Open episode `name` of the folder (or an episode's full path) in a review window."""
        try:
            window = ReviewWindow(self.out_dir / name)
        except (TeleopError, OSError) as exc:
            self.status_label.say(f"cannot review {name}: {exc}", error=True)
            return None
        window.changed.connect(self.refresh_episodes)
        window.trashed.connect(self._on_review_trashed)
        window.resize(1100, 820)
        window.show()
        self.reviews = [w for w in self.reviews if w.isVisible()] + [window]
        return window

    def open_export(self) -> ExportDialog:
        """The export dialog for this folder's episodes."""
        from ui.export_dialog import ExportDialog

        self.export_dialog = ExportDialog(self.out_dir, self)
        self.export_dialog.show()
        return self.export_dialog

    def open_calibrate(self) -> CalibrateDialog:
        """The calibration dialog for the picked device; its result is used from the next build on."""
        option = self.device_option.text().strip() or None
        self.calibrate_dialog = CalibrateDialog(self.out_dir, self.device_combo.currentText(), option, self)
        self.calibrate_dialog.calibrated.connect(lambda _: self.rebuild_rig())
        self.calibrate_dialog.show()
        return self.calibrate_dialog

    def _device_gives_pose(self) -> bool:
        """Whether the picked device gives a controller pose (a replay: whether the device of its trace does)."""
        device = self.device_combo.currentText()
        try:
            return source_device(device, self.device_option.text().strip() or None) in pose_devices()
        except (TeleopError, OSError):  # a replay whose trace cannot be read: the build says why
            return False

    def open_train(self) -> TrainDialog:
        """The training dialog for this folder's episodes; its rollouts open in review windows."""
        from ui.train_dialog import TrainDialog

        self.train_dialog = TrainDialog(self.out_dir, self)
        self.train_dialog.review_requested.connect(lambda path: self.review(str(path)))
        self.train_dialog.show()
        return self.train_dialog

    def _on_review_trashed(self, entry: TrashEntry) -> None:
        self._trashed = entry
        if self._last_path is not None and self._last_path.name == entry.name:
            self._last_path = None
        if self.take_panel.take is not None and self.take_panel.take.path.name == entry.name:
            self.take_panel.close_take(kept=False)
        self.status_label.say(f"moved {entry.name} to the trash ({entry.path.parent}); Undo brings it back")
        self.refresh_episodes()
        self._update_buttons()

    def keep_take(self) -> None:
        """Keep the last take, with the outcome, instruction and note shown written into it."""
        take = self.take_panel.take
        if take is None or self.recording:
            return
        changes = self.take_panel.labels()
        try:
            if changes:
                label_episode(take.path, **changes)  # type: ignore[arg-type]
        except (TeleopError, OSError) as exc:
            self.status_label.say(f"could not label {take.path.name}: {exc}", error=True)
            return
        outcome = self.take_panel.outcome.currentText()
        self.take_panel.close_take(kept=True)
        pause = self.take_panel.reset_spin.value()
        if pause > 0:
            self.next_take.start(round(pause * 1000))
            self.status_label.say(f"kept {take.path.name} ({outcome}); reset the scene: the next take starts in "
                             f"{pause:g} s (Esc cancels)")
        else:
            self.status_label.say(f"kept {take.path.name} ({outcome})")
        self.refresh_episodes()
        self._update_buttons()

    def _start_next_take(self) -> None:
        if self.ready and self.take_panel.take is None:
            self.record()

    def cancel_next_take(self) -> None:
        """Stop the countdown to the next take."""
        if self.next_take.isActive():
            self.next_take.stop()
            self.status_label.say("next take cancelled: press Record when ready")

    def rerecord(self) -> None:
        """Move the last take to the trash and record its scene again."""
        take = self.take_panel.take
        if take is None or self.recording:
            return
        self._to_trash(take.path, "")
        self.take_panel.close_take(kept=False)
        self._last_path = None
        self.seed_spin.setValue(take.seed)
        self.record()

    def _to_trash(self, path: Path, what: str) -> None:
        try:
            self._trashed = move_to_trash(path)
        except (TeleopError, OSError) as exc:
            self.status_label.say(f"could not discard {path.name}: {exc}", error=True)
            return
        self.status_label.say(f"moved {path.name}{what} to the trash ({self._trashed.path.parent}); Undo brings it "
                              "back")

    def undo_discard(self) -> None:
        """Bring the last discarded episode back under its name."""
        if self._trashed is None:
            return
        try:
            path = restore(self.out_dir, self._trashed.path.name)
        except (TeleopError, OSError) as exc:
            self.status_label.say(f"could not restore {self._trashed.name}: {exc}", error=True)
        else:
            self.status_label.say(f"restored {path.name}")
            self._last_path = path
        self._trashed = None
        self.refresh_episodes()
        self._update_buttons()

    def _on_live(self, state: LiveState) -> None:
        self.live_steps = state.steps
        self._show_state(state)
        if self.joint_plot is not None:
            self.joint_plot.add(state.t, state.joint_pos, state.joint_target)
        self.tick_plot.show_ticks(state.recent_tick_ms)
        if not self.worker.stopping:
            target = self._requested.session.rate_hz if self._requested is not None else state.rate_hz
            slow = state.steps > 10 and state.rate_hz < SLOW_FRACTION * target
            robot = f"; robot: {state.robot_message}" if state.robot_message else ""
            short = {name: n for name, n in state.camera_repeats.items() if n > REPEATED_FRACTION * state.steps}
            robot += "".join(f"; camera {name}: no new frame on {n} of {state.steps} steps"
                             for name, n in sorted(short.items()))
            self.status_label.say(f"recording: {state.steps} steps, {state.elapsed_s:.1f} s, {state.rate_hz:.1f} Hz of "
                                  f"{target:g} ({state.late_ticks} late ticks, last tick {state.tick_ms:.0f} ms), "
                                  f"success: {'yes' if state.success else 'no'}{robot}",
                                  error=slow or "STOP" in robot or bool(short))

    def _on_recorded(self, episode: RecordedEpisode) -> None:
        self._end_recording()
        result = episode.result
        if self._discard_requested:
            self._to_trash(episode.path, f" ({result.steps} steps)")
            self.take_panel.count_discarded()
        else:
            self._last_path = episode.path
            instruction = self.rig_info.instruction if self.rig_info is not None else ""
            self.take_panel.offer(Take(episode.path, self._take_seed, result.success, instruction))
            problems = "".join(f"; {problem}, its last frame repeated" for problem in result.camera_problems)
            if result.malformed_samples:
                problems += f"; {result.device_problems[0]}, the robot held still on each"
            target_hz = self._requested.session.rate_hz if self._requested is not None else None
            if target_hz is not None:
                problems += "".join(f"; {problem}" for problem in result.timing_problems(target_hz))
            self.status_label.say(
                f"saved {episode.path.name}: {result.steps} steps, {result.duration_s:.1f} s, "
                f"{result.achieved_rate_hz:.1f} Hz, success: {'yes' if result.success else 'no'} "
                f"(ended by {result.stopped_by}){problems}", error=bool(problems))
            self.seed_spin.setValue(self.seed_spin.value() + 1)  # also previews the next episode's scene
        self.refresh_episodes()
        self._update_buttons()

    def _on_failed(self, message: str) -> None:
        self._end_recording()
        self.status_label.say(f"recording failed: {message}", error=True)
        self.refresh_episodes()

    def _on_died(self, message: str) -> None:
        self.rig_info = None
        self._end_recording()
        self.status_label.say(message, error=True)

    def _end_recording(self) -> None:
        self.recording = False
        self._update_buttons()

    def refresh_episodes(self) -> None:
        """Re-read the output folder into the episode table."""
        self.episode_table.show_episodes(scan_episodes(self.out_dir))

    def _update_buttons(self) -> None:
        self.record_button.setEnabled(self.ready and not self.stopped)
        self.check_button.setEnabled(self.rig_info is not None and not self.recording)
        self.calibrate_button.setEnabled(not self.recording and self._gives_pose)
        self.stop_button.setEnabled(self.recording)
        self.discard_button.setEnabled(
            self.recording or (self._last_path is not None and self._last_path.exists()))
        self.undo_button.setEnabled(not self.recording and self._trashed is not None)
        pending = not self.recording and self.take_panel.take is not None
        self._shortcuts["K"].setEnabled(pending)
        self._shortcuts["R"].setEnabled(pending)
        self._shortcuts["D"].setEnabled(self.discard_button.isEnabled() and not self.recording)
        for widget in (self.robot_combo, self.task_combo, self.device_combo, self.seed_spin, self.format_combo,
                       self.codec_combo, self.camera_picker):
            widget.setEnabled(not self.recording)
        self._show_option(self.device_combo.currentText())

    # --- keyboard device -------------------------------------------------------------------------------

    def eventFilter(self, watched: QObject | None, event: QEvent | None) -> bool:  # noqa: N802 - Qt API
        """While a keyboard recording runs, every key of the device's map goes to the device."""
        if event is None or event.type() not in (QEvent.Type.KeyPress, QEvent.Type.KeyRelease):
            return False
        keyboard = self.rig_info is not None and self.rig_info.config.device == "keyboard"
        if not self.recording or not keyboard or not isinstance(event, QKeyEvent):
            return False
        name = key_name(event.key())
        if name is None:
            return False
        if not event.isAutoRepeat():
            self.worker.send_key(name, event.type() == QEvent.Type.KeyPress)
        return True

    # --- shutdown --------------------------------------------------------------------------------------

    def closeEvent(self, event: QCloseEvent | None) -> None:  # noqa: N802 - Qt API
        """End a running recording (it is kept), release the simulator and cameras and end the rig's process."""
        app = QApplication.instance()
        if app is not None:
            app.removeEventFilter(self)
        self.worker.shutdown()
        self.rig_info = None
        self.recording = False
        super().closeEvent(event)


def _clear_layout(layout: QLayout) -> None:
    """Remove and delete every widget and sub-layout of a layout."""
    while (item := layout.takeAt(0)) is not None:
        if (widget := item.widget()) is not None:
            widget.deleteLater()
        elif (child := item.layout()) is not None:
            _clear_layout(child)
            child.deleteLater()

