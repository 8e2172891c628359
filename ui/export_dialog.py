"""Exporting the folder's episodes as a dataset from the app: the same `export_directory` as `teleop export`, on a
worker thread, with a progress bar and Cancel (a cancelled export leaves nothing at its path)."""

from __future__ import annotations

from pathlib import Path

from PyQt6.QtCore import QObject, pyqtSignal, pyqtSlot
from PyQt6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLineEdit,
    QProgressBar,
    QVBoxLayout,
)

from recorder.export.actions import ACTION_SPACES
from recorder.export.base import VIDEO_CODECS, ExportOptions, ExportProgress
from recorder.export.registry import EXPORTERS, export_directory
from teleop.errors import TeleopError
from ui.job_dialog import Job, JobDialog
from ui.widgets import StatusLabel


class ExportCancelled(Exception):
    """Raised from the progress callback when the user pressed Cancel."""


class ExportWorker(Job):
    """Runs one export on its thread; signals progress(done, total, episode), finished(summary), failed(message)."""

    progress = pyqtSignal(int, int, str)
    finished = pyqtSignal(str)
    failed = pyqtSignal(str)

    def __init__(self, directory: Path, format: str, out: Path, options: ExportOptions) -> None:
        super().__init__()
        self.args = (directory, format, out, options)

    @pyqtSlot()
    def run(self) -> None:
        directory, format, out, options = self.args
        try:
            result = export_directory(directory, format, out, options, self._progress)
        except ExportCancelled:
            self.failed.emit(f"cancelled: nothing was written to {out}")
        except (TeleopError, OSError) as exc:
            self.failed.emit(str(exc))
        else:
            skipped = "".join(f"; not exported: {name} ({why})" for name, why in result.skipped)
            self.finished.emit(result.summary() + skipped)

    def _progress(self, progress: ExportProgress) -> None:
        if self.cancelled:
            raise ExportCancelled
        self.progress.emit(progress.done, progress.total, progress.episode)


class ExportDialog(JobDialog):
    """The options of `teleop export` for the episodes of `directory`."""

    def __init__(self, directory: Path, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.directory = Path(directory)
        self.setWindowTitle(f"export the episodes of {self.directory}")
        column = QVBoxLayout(self)
        form = QFormLayout()
        self.format_combo = QComboBox()
        for name, entry in EXPORTERS.items():
            self.format_combo.addItem(f"{name}: {entry.description}", name)
        self.out_edit = QLineEdit(str(self.directory.parent / f"{self.directory.name}_dataset"))
        self.cameras_edit = QLineEdit()
        self.cameras_edit.setPlaceholderText("every camera (or e.g. front,wrist)")
        self.size_edit = QLineEdit()
        self.size_edit.setPlaceholderText("as recorded (or HxW, e.g. 96x96)")
        self.action_combo = QComboBox()
        self.action_combo.addItems(list(ACTION_SPACES))
        self.valid_spin = QDoubleSpinBox()
        self.valid_spin.setRange(0.0, 0.9)
        self.valid_spin.setSingleStep(0.05)
        self.valid_spin.setValue(0.1)
        self.codec_combo = QComboBox()
        self.codec_combo.addItems(list(VIDEO_CODECS))
        self.include_all = QCheckBox("also failed episodes and those without an outcome")
        for label, widget in (("Format", self.format_combo), ("Write to", self.out_edit),
                              ("Cameras", self.cameras_edit), ("Image size", self.size_edit),
                              ("Actions", self.action_combo), ("Validation share", self.valid_spin),
                              ("Video codec (lerobot)", self.codec_combo), ("", self.include_all)):
            form.addRow(label, widget)
        column.addLayout(form)
        self.bar = QProgressBar()
        self.status = StatusLabel()
        column.addWidget(self.bar)
        column.addWidget(self.status)
        buttons = QHBoxLayout()
        self.export_button, self.cancel_button = self.job_buttons("Export", self.start)
        buttons.addWidget(self.export_button)
        buttons.addWidget(self.cancel_button)
        column.addLayout(buttons)

    def options(self) -> ExportOptions:
        """The options as entered (ExportOptions checks them)."""
        cameras = tuple(c.strip() for c in self.cameras_edit.text().split(",") if c.strip()) or None
        size = self.size_edit.text().strip().lower()
        image_size = None
        if size:
            height, sep, width = size.partition("x")
            if not sep or not height.strip().isdigit() or not width.strip().isdigit():
                raise TeleopError(f"image size {size!r}: give height x width in pixels, e.g. 96x96")
            image_size = (int(height), int(width))
        return ExportOptions(cameras=cameras, image_size=image_size, action_space=self.action_combo.currentText(),
                             include_all=self.include_all.isChecked(), valid_fraction=self.valid_spin.value(),
                             video_codec=self.codec_combo.currentText())

    def start(self) -> None:
        """Start the export on a worker thread."""
        if self.running:
            return
        try:
            options = self.options()
        except TeleopError as exc:
            self.status.say(str(exc), error=True)
            return
        out = Path(self.out_edit.text().strip()).expanduser()
        job = ExportWorker(self.directory, self.format_combo.currentData(), out, options)
        job.progress.connect(self._on_progress)
        job.finished.connect(self._on_finished)
        job.failed.connect(self._on_failed)
        self.export_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.bar.setRange(0, 0)  # busy until the first progress: the episodes are verified first
        self.status.say(f"verifying the episodes, then writing {out} ...")
        self.start_job(job)

    def cancel(self) -> None:
        """Stop the export at its next progress step; what it wrote so far is deleted."""
        if self.running:
            self.status.say("cancelling ...")
        super().cancel()

    def _on_progress(self, done: int, total: int, episode: str) -> None:
        self.bar.setRange(0, max(total, 1))
        self.bar.setValue(done)
        self.status.say(f"writing {episode}: {done} of {total}")

    def _on_finished(self, text: str) -> None:
        self._done(text, error=False)

    def _on_failed(self, text: str) -> None:
        self._done(text, error=True)

    def _done(self, text: str, error: bool) -> None:
        self.end_job()
        self.bar.setRange(0, 1)
        self.bar.setValue(0 if error else 1)
        self.export_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        self.status.say(text, error)
