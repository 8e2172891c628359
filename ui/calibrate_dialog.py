"""Calibrating a VR controller from the app: the routine of `teleop calibrate` (teleop.calibrate) on a worker
thread, its instructions shown as they come, the result saved beside the episodes and used by the next recordings."""

from __future__ import annotations

import time
from pathlib import Path

from PyQt6.QtCore import QObject, pyqtSignal, pyqtSlot
from PyQt6.QtWidgets import QComboBox, QFormLayout, QHBoxLayout, QLabel, QVBoxLayout

from teleop.calibrate import METHODS, CalibrateConfig, calibrate, describe_calibration
from teleop.errors import TeleopError
from ui.job_dialog import Job, JobDialog
from ui.widgets import StatusLabel, monospace_font

CALIBRATION_FILE = "calibration.json"  # in the episodes' folder; the window uses it when it is there
METHOD_HELP = {
    "point": "hold the grip and move the controller about 20 cm forward (away from the robot's base), release; "
             "then the same upward",
    "still": "hold the controller still with its axes along the robot base's and keep the grip held for 2 s",
}


class CalibrationCancelled(Exception):
    """Raised from the routine's sleep when the user pressed Cancel."""


class CalibrateWorker(Job):
    """Runs the routine on its thread; signals prompt(text), finished(description), failed(message)."""

    prompt = pyqtSignal(str)
    finished = pyqtSignal(str)
    failed = pyqtSignal(str)

    def __init__(self, config: CalibrateConfig) -> None:
        super().__init__()
        self.config = config

    @pyqtSlot()
    def run(self) -> None:
        try:
            calibration = calibrate(self.config, prompt=self.prompt.emit, sleep=self._sleep)
        except CalibrationCancelled:
            self.failed.emit(f"cancelled: {self.config.out} was not written")
        except (TeleopError, OSError) as exc:
            self.failed.emit(str(exc))
        else:
            self.finished.emit(describe_calibration(calibration))

    def _sleep(self, seconds: float) -> None:
        if self.cancelled:
            raise CalibrationCancelled
        time.sleep(seconds)


class CalibrateDialog(JobDialog):
    """Measures R_base_device with the window's device into `<folder>/calibration.json`; emits calibrated(path)."""

    calibrated = pyqtSignal(object)

    def __init__(self, folder: Path, device: str, device_arg: str | None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.out = Path(folder) / CALIBRATION_FILE
        self.device, self.device_arg = device, device_arg
        self.setWindowTitle(f"calibrate the {device} controller")
        column = QVBoxLayout(self)
        form = QFormLayout()
        form.addRow("Device", QLabel(device + (f" ({device_arg})" if device_arg else "")))
        self.method_combo = QComboBox()
        for method in METHODS:
            self.method_combo.addItem(f"{method}: {METHOD_HELP[method]}", method)
        form.addRow("Method", self.method_combo)
        form.addRow("Saved to", QLabel(str(self.out)))
        column.addLayout(form)
        self.prompts = QLabel("Press Start, then follow the instructions here.")
        self.prompts.setWordWrap(True)
        column.addWidget(self.prompts)
        self.result_label = StatusLabel()
        self.result_label.setFont(monospace_font())
        column.addWidget(self.result_label)
        buttons = QHBoxLayout()
        self.start_button, self.cancel_button = self.job_buttons("Start", self.start)
        buttons.addStretch(1)
        buttons.addWidget(self.start_button)
        buttons.addWidget(self.cancel_button)
        column.addLayout(buttons)
        self.resize(640, 320)

    def start(self) -> None:
        """Start the routine on a worker thread."""
        config = CalibrateConfig(self.device, self.out, self.device_arg, self.method_combo.currentData())
        worker = CalibrateWorker(config)
        worker.prompt.connect(self._on_prompt)
        worker.finished.connect(self._on_finished)
        worker.failed.connect(self._on_failed)
        self.start_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.result_label.say("")
        self.prompts.setText("")
        self.start_job(worker)

    def _on_prompt(self, text: str) -> None:
        self.prompts.setText("\n".join(filter(None, [self.prompts.text(), text])))

    def _on_finished(self, description: str) -> None:
        self._done()
        self.result_label.say(f"saved {self.out.name}; the next recordings use it\n{description}")
        self.calibrated.emit(self.out)

    def _on_failed(self, message: str) -> None:
        self._done()
        self.result_label.say(message, error=True)

    def _done(self) -> None:
        self.end_job()
        self.start_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
