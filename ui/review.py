"""Reviewing one recorded episode: every camera and the joint plot at a step picked on a timeline, playback at the
recorded speed, trim handles (prefilled with the idle cuts), labels, and delete to the trash."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PyQt6.QtCore import Qt, QTimer, pyqtSignal
from PyQt6.QtWidgets import (
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSlider,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from recorder.backend import open_episode
from recorder.labels import label_episode
from recorder.reader import EpisodeReader
from recorder.trash import TrashEntry, move_to_trash
from recorder.trim import auto_trim_range, trim_episode
from teleop.errors import TeleopError
from ui.take import OUTCOMES
from ui.widgets import CameraView, StatusLabel, joint_colors, short_names

REVIEW_CAMERA_PX = 320  # [px] height of each camera view


LEGEND_ROWS = 6  # rows of the joint plot's legend; more joints make more columns

class ReviewWindow(QWidget):
    """One episode, opened from the episode table. The episode file stays open while the window shows it, and is
    closed around a trim or a label change (both replace the file).

    Signals: changed() after a trim or a label change; trashed(TrashEntry) after Delete (the window closes).
    """

    changed = pyqtSignal()
    trashed = pyqtSignal(object)

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = Path(path)
        self.reader: EpisodeReader | None = None
        self.step = 0
        self.setWindowTitle(f"review {self.path.name}")
        self.timer = QTimer(self)
        self.timer.timeout.connect(self._advance)
        self._build()
        self._load()

    # --- layout --------------------------------------------------------------------------------------

    def _build(self) -> None:
        column = QVBoxLayout(self)
        self.cameras_row = QHBoxLayout()
        column.addLayout(self.cameras_row)
        self.plot = pg.PlotWidget(background="w")
        self.plot.setLabel("left", "q [rad] / [m]")
        self.plot.setLabel("bottom", "t [s]")
        self.plot.setMinimumHeight(200)
        self.time_line = pg.InfiniteLine(angle=90, pen=pg.mkPen("#222222", width=1))
        self.region = pg.LinearRegionItem(brush=pg.mkBrush(46, 125, 50, 40))  # the steps a trim keeps
        self.region.sigRegionChangeFinished.connect(self._region_moved)
        column.addWidget(self.plot)
        timeline = QHBoxLayout()
        self.play_button = QPushButton("Play")
        self.play_button.clicked.connect(self.toggle_play)
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.valueChanged.connect(self.show_step)
        self.step_label = QLabel()
        self.step_label.setMinimumWidth(170)
        for widget in (self.play_button, self.slider, self.step_label):
            timeline.addWidget(widget)
        column.addLayout(timeline)
        row = QHBoxLayout()
        row.addWidget(self._trim_box())
        row.addWidget(self._labels_box())
        column.addLayout(row)
        self.status = StatusLabel()
        column.addWidget(self.status)

    def _trim_box(self) -> QGroupBox:
        box = QGroupBox("Trim")
        form = QFormLayout(box)
        self.first_spin, self.last_spin = QSpinBox(), QSpinBox()
        self.first_spin.setToolTip("First step kept")
        self.last_spin.setToolTip("Last step kept")
        for spin in (self.first_spin, self.last_spin):
            spin.valueChanged.connect(self._spins_changed)
        form.addRow("First step kept", self.first_spin)
        form.addRow("Last step kept", self.last_spin)
        buttons = QHBoxLayout()
        self.auto_button = QPushButton("Idle cuts")
        self.auto_button.setToolTip("From just before the first commanded motion to just after the last")
        self.auto_button.clicked.connect(self.suggest_cuts)
        self.trim_button = QPushButton("Trim")
        self.trim_button.setToolTip("Keep these steps; the original goes to the folder's trash")
        self.trim_button.clicked.connect(self.trim)
        buttons.addWidget(self.auto_button)
        buttons.addWidget(self.trim_button)
        form.addRow(buttons)
        return box

    def _labels_box(self) -> QGroupBox:
        box = QGroupBox("Labels")
        form = QFormLayout(box)
        self.outcome = QComboBox()
        for text, value in OUTCOMES:
            self.outcome.addItem(text, value)
        self.instruction = QLineEdit()
        self.note = QLineEdit()
        form.addRow("Outcome", self.outcome)
        form.addRow("Instruction", self.instruction)
        form.addRow("Note", self.note)
        buttons = QHBoxLayout()
        self.save_button = QPushButton("Save labels")
        self.save_button.clicked.connect(self.save_labels)
        self.delete_button = QPushButton("Delete")
        self.delete_button.setToolTip("Move the episode to the folder's trash (Undo in the main window)")
        self.delete_button.clicked.connect(self.delete)
        buttons.addWidget(self.save_button)
        buttons.addWidget(self.delete_button)
        form.addRow(buttons)
        return box

    # --- the episode ---------------------------------------------------------------------------------

    def _load(self) -> None:
        """(Re)open the episode and show it from its first step."""
        self._close_reader()
        self.reader = reader = open_episode(self.path)
        self.num_steps = reader.num_steps
        self.t = np.asarray(reader.timestamps, dtype=float) - float(reader.timestamps[0])
        self.rate_hz = float(reader.meta.control_rate_hz)
        while (item := self.cameras_row.takeAt(0)) is not None:
            if (widget := item.widget()) is not None:
                widget.deleteLater()
        self.views: dict[str, CameraView] = {}
        for name in reader.camera_names:
            info = reader.camera_info(name)
            view = CameraView(info.width, info.height, REVIEW_CAMERA_PX / info.height)
            view.setToolTip(name)
            self.views[name] = view
            self.cameras_row.addWidget(view)
        self._plot_joints(reader)
        attrs = reader.attrs
        self.outcome.setCurrentIndex([value for _, value in OUTCOMES].index(reader.success))
        self.instruction.setText(reader.meta.instruction)
        self.note.setText(str(attrs.get("note", "") or ""))
        last = self.num_steps - 1
        for spin in (self.first_spin, self.last_spin):
            spin.blockSignals(True)
            spin.setRange(0, last)
            spin.blockSignals(False)
        self._set_range(0, last)
        self.slider.blockSignals(True)
        self.slider.setRange(0, last)
        self.slider.setValue(0)
        self.slider.blockSignals(False)
        self.show_step(0)

    def _plot_joints(self, reader: EpisodeReader) -> None:
        self.plot.clear()
        q = np.asarray(reader.joint_pos, dtype=float)
        # a hand's sixteen joints in columns of at most six rows, on a see-through background
        self.plot.addLegend(offset=(-10, 10), colCount=-(-q.shape[1] // LEGEND_ROWS), labelTextSize="8pt",
                            brush=pg.mkBrush(255, 255, 255, 190))
        names = short_names(tuple(reader.meta.joint_names))
        for i, color in enumerate(joint_colors(q.shape[1])):
            self.plot.plot(self.t, q[:, i], pen=pg.mkPen(color, width=2), name=names[i])
        self.plot.addItem(self.region)
        self.plot.addItem(self.time_line)

    def show_step(self, step: int) -> None:
        """Every camera's frame of `step`, and the plot's cursor at its time."""
        assert self.reader is not None
        self.step = int(np.clip(step, 0, self.num_steps - 1))
        for name, view in self.views.items():
            view.show_rgb(self.reader.frame(name, self.step))
        self.time_line.setValue(self.t[self.step])
        self.step_label.setText(f"step {self.step}/{self.num_steps - 1}, {self.t[self.step]:.2f} s")
        if self.slider.value() != self.step:
            self.slider.setValue(self.step)

    # --- playback ------------------------------------------------------------------------------------

    def toggle_play(self) -> None:
        """Play from the current step at the recorded rate, or pause."""
        if self.timer.isActive():
            self.timer.stop()
            self.play_button.setText("Play")
            return
        if self.step >= self.num_steps - 1:
            self.show_step(0)
        self.timer.start(round(1000 / self.rate_hz))
        self.play_button.setText("Pause")

    def _advance(self) -> None:
        if self.step >= self.num_steps - 1:
            self.toggle_play()
            return
        self.show_step(self.step + 1)

    # --- trim ----------------------------------------------------------------------------------------

    def _set_range(self, first: int, last: int) -> None:
        for spin, value in ((self.first_spin, first), (self.last_spin, last)):
            spin.blockSignals(True)
            spin.setValue(value)
            spin.blockSignals(False)
        self.region.blockSignals(True)
        self.region.setRegion((self.t[first], self.t[last]))
        self.region.blockSignals(False)

    def _spins_changed(self) -> None:
        first, last = self.first_spin.value(), self.last_spin.value()
        self._set_range(min(first, last), max(first, last))

    def _region_moved(self) -> None:
        """Handles dragged on the plot: snap each to the nearest step."""
        low, high = self.region.getRegion()
        first = int(np.abs(self.t - low).argmin())
        last = int(np.abs(self.t - high).argmin())
        self._set_range(first, max(first, last))

    def suggest_cuts(self) -> None:
        """The idle start and end cut off (recorder.trim.auto_trim_range)."""
        assert self.reader is not None
        try:
            cuts = auto_trim_range(self.reader)
        except TeleopError as exc:
            self.status.say(str(exc), error=True)
            return
        self._set_range(cuts.start, cuts.end - 1)
        self.status.say(f"idle cuts: keep steps {cuts.start}-{cuts.end - 1} of 0-{self.num_steps - 1}")

    def trim(self) -> None:
        """Keep the chosen steps; the original goes to the folder's trash."""
        first, last = self.first_spin.value(), self.last_spin.value()
        if (first, last) == (0, self.num_steps - 1):
            self.status.say("the range is the whole episode: nothing to trim")
            return
        self._close_reader()
        try:
            trim_episode(self.path, first, last + 1)
        except (TeleopError, OSError) as exc:
            self.status.say(f"could not trim: {exc}", error=True)
        else:
            self.status.say(f"kept steps {first}-{last}; the original is in the folder's trash")
            self.changed.emit()
        self._load()

    # --- labels and delete ---------------------------------------------------------------------------

    def save_labels(self) -> None:
        """Write the outcome, instruction and note into the episode."""
        self._close_reader()
        try:
            label_episode(self.path, success=self.outcome.currentData(), instruction=self.instruction.text().strip(),
                          note=self.note.text().strip())
        except (TeleopError, OSError) as exc:
            self.status.say(f"could not save the labels: {exc}", error=True)
        else:
            self.status.say(f"saved the labels of {self.path.name}")
            self.changed.emit()
        step = self.step
        self._load()
        self.show_step(step)

    def delete(self) -> None:
        """Move the episode to the folder's trash and close."""
        self._close_reader()
        try:
            entry: TrashEntry = move_to_trash(self.path)
        except (TeleopError, OSError) as exc:
            self.status.say(f"could not delete: {exc}", error=True)
            self._load()
            return
        self.trashed.emit(entry)
        self.close()

    def _close_reader(self) -> None:
        self.timer.stop()
        self.play_button.setText("Play")
        if self.reader is not None:
            self.reader.close()
            self.reader = None

    def closeEvent(self, event: object) -> None:  # noqa: N802 - Qt API
        self._close_reader()
        super().closeEvent(event)  # type: ignore[arg-type]
