"""Exporting the folder's episodes as a dataset from the app: the same `export_directory` as `teleop export`, on a
worker thread, with a progress bar and Cancel (a cancelled export leaves nothing at its path)."""

from __future__ import annotations

from pathlib import Path

from PyQt6.QtCore import QObject, QThread, pyqtSignal, pyqtSlot
from PyQt6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
)

from recorder.export.actions import ACTION_SPACES
from recorder.export.base import VIDEO_CODECS, ExportOptions, ExportProgress
from recorder.export.registry import EXPORTERS, export_directory
from teleop.errors import TeleopError


class ExportCancelled(Exception):
    """Raised from the progress callback when the user pressed Cancel."""


class ExportWorker(QObject):
    """Runs one export on its thread; signals progress(done, total, episode), finished(summary), failed(message)."""

    progress = pyqtSignal(int, int, str)
    finished = pyqtSignal(str)
    failed = pyqtSignal(str)

    def __init__(self, directory: Path, format: str, out: Path, options: ExportOptions) -> None:
        super().__init__()
        self.args = (directory, format, out, options)
        self.cancelled = False

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


class ExportDialog(QDialog):
    """The options of `teleop export` for the episodes of `directory`."""

    def __init__(self, directory: Path, parent: QObject | None = None) -> None:
        super().__init__(parent)  # type: ignore[arg-type]
        self.directory = Path(directory)
        self.setWindowTitle(f"export the episodes of {self.directory}")
        self.thread_: QThread | None = None
        self.worker: ExportWorker | None = None
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
        self.status = QLabel()
        self.status.setWordWrap(True)
        column.addWidget(self.bar)
        column.addWidget(self.status)
        buttons = QHBoxLayout()
        self.export_button = QPushButton("Export")
        self.export_button.clicked.connect(self.start)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        buttons.addWidget(self.export_button)
        buttons.addWidget(self.cancel_button)
        column.addLayout(buttons)

    @property
    def running(self) -> bool:
        return self.thread_ is not None

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
            self._say(str(exc), error=True)
            return
        out = Path(self.out_edit.text().strip()).expanduser()
        self.worker = ExportWorker(self.directory, self.format_combo.currentData(), out, options)
        self.thread_ = QThread(self)
        self.worker.moveToThread(self.thread_)
        self.thread_.started.connect(self.worker.run)
        self.worker.progress.connect(self._on_progress)
        self.worker.finished.connect(self._on_finished)
        self.worker.failed.connect(self._on_failed)
        self.export_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.bar.setRange(0, 0)  # busy until the first progress: the episodes are verified first
        self._say(f"verifying the episodes, then writing {out} ...")
        self.thread_.start()

    def cancel(self) -> None:
        """Stop the export at its next progress step; what it wrote so far is deleted."""
        if self.worker is not None:
            self.worker.cancelled = True
            self._say("cancelling ...")

    def _on_progress(self, done: int, total: int, episode: str) -> None:
        self.bar.setRange(0, max(total, 1))
        self.bar.setValue(done)
        self._say(f"writing {episode}: {done} of {total}")

    def _on_finished(self, text: str) -> None:
        self._done(text, error=False)

    def _on_failed(self, text: str) -> None:
        self._done(text, error=True)

    def _done(self, text: str, error: bool) -> None:
        if self.thread_ is not None:
            self.thread_.quit()
            self.thread_.wait()
        self.thread_ = self.worker = None
        self.bar.setRange(0, 1)
        self.bar.setValue(0 if error else 1)
        self.export_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        self._say(text, error)

    def _say(self, text: str, error: bool = False) -> None:
        self.status.setStyleSheet("color: #c0392b;" if error else "")
        self.status.setText(text)

    def closeEvent(self, event: object) -> None:  # noqa: N802 - Qt API
        self.cancel()
        if self.thread_ is not None:
            self.thread_.quit()
            self.thread_.wait()
        super().closeEvent(event)  # type: ignore[arg-type]
