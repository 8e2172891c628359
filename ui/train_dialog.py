"""Training a policy on the folder's episodes from the app, then rolling it out: `teleop train` and `teleop eval`'s
functions on a worker thread, with the progress lines, a live loss plot read from the run's train_log.jsonl,
Cancel between steps or rollouts, and the success rate with the recorded rollouts to review."""

from __future__ import annotations

import json
from pathlib import Path

import pyqtgraph as pg
from PyQt6.QtCore import QObject, QTimer, pyqtSignal, pyqtSlot
from PyQt6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
)

from teleop.errors import TeleopError
from teleop.train.architectures import default_steps, encoder_frozen, encoder_names
from ui.job_dialog import Job, JobDialog
from ui.widgets import StatusLabel


class Cancelled(TeleopError):
    """Cancel was pressed while rolling out."""


class TrainWorker(Job):
    """Trains, then evaluates on test scenes; signals line(text), finished(success rate or -1, rollouts folder or
    ""), failed(message)."""

    line = pyqtSignal(str)
    finished = pyqtSignal(float, str)
    failed = pyqtSignal(str)

    def __init__(self, config: object, eval_episodes: int, record: bool) -> None:
        super().__init__()
        self.config, self.eval_episodes, self.record = config, eval_episodes, record

    @pyqtSlot()
    def run(self) -> None:
        from teleop.evaluate import evaluate_checkpoint
        from teleop.train.trainer import TrainConfig, train

        config = self.config
        assert isinstance(config, TrainConfig)
        try:
            train(config, log=self.line.emit, stop=lambda: self.cancelled)
            if not self.eval_episodes:
                self.finished.emit(-1.0, "")
                return
            rollouts = config.out_dir / "rollouts" if self.record else None
            result = evaluate_checkpoint(config.out_dir, self.eval_episodes, progress=self._progress,
                                         record_dir=rollouts)
        except (TeleopError, OSError, RuntimeError) as exc:
            self.failed.emit(str(exc))
        else:
            self.finished.emit(result.success_rate, "" if rollouts is None else str(rollouts))

    def _progress(self, text: str) -> None:
        if self.cancelled:
            raise Cancelled("evaluation cancelled: the trained policy is in the run folder")
        self.line.emit(text)


class TrainDialog(JobDialog):
    """`teleop train`'s main options for the episodes of `directory`, and `teleop eval` after it."""

    review_requested = pyqtSignal(object)  # a recorded rollout's path

    def __init__(self, directory: Path, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.directory = Path(directory)
        self.setWindowTitle(f"train a policy on {self.directory}")
        self.rollouts: Path | None = None
        self.success_rate: float | None = None
        column = QVBoxLayout(self)
        form = QFormLayout()
        self.run_edit = QLineEdit(str(self.directory.parent / f"{self.directory.name}_policy"))
        self.encoder_combo = QComboBox()
        self.encoder_combo.addItems(list(encoder_names()))
        self.encoder_combo.setCurrentText("keypoints")
        self.weights_edit = QLineEdit()
        self.weights_edit.setPlaceholderText("none: a random init (keypoints train with the policy)")
        self.steps_spin = QSpinBox()
        self.steps_spin.setRange(1, 1_000_000)
        self.encoder_combo.currentTextChanged.connect(self._default_steps)
        self.weights_edit.editingFinished.connect(self._default_steps)
        self.cameras_edit = QLineEdit()
        self.cameras_edit.setPlaceholderText("every camera (or e.g. front,wrist)")
        self.eval_spin = QSpinBox()
        self.eval_spin.setRange(0, 1000)
        self.eval_spin.setValue(10)
        self.record_check = QCheckBox("record the rollouts as episodes to review")
        self.record_check.setChecked(True)
        for label, widget in (("Run folder", self.run_edit), ("Encoder", self.encoder_combo),
                              ("Encoder weights", self.weights_edit), ("Steps", self.steps_spin),
                              ("Cameras", self.cameras_edit), ("Test rollouts", self.eval_spin),
                              ("", self.record_check)):
            form.addRow(label, widget)
        column.addLayout(form)
        self.plot = pg.PlotWidget(background="w")
        self.plot.setLabel("left", "loss (normalised actions)")
        self.plot.setLabel("bottom", "step")
        self.plot.setLogMode(y=True)
        self.plot.setMinimumHeight(180)
        self.curve = self.plot.plot(pen=pg.mkPen("#1565c0", width=2))
        column.addWidget(self.plot)
        self.log_label = QLabel()
        self.log_label.setWordWrap(True)
        self.status = StatusLabel()
        column.addWidget(self.log_label)
        column.addWidget(self.status)
        buttons = QHBoxLayout()
        self.train_button, self.cancel_button = self.job_buttons("Train and evaluate", self.start)
        self.review_button = QPushButton("Review a rollout")
        self.review_button.setEnabled(False)
        self.review_button.clicked.connect(self._review_rollout)
        for button in (self.train_button, self.cancel_button, self.review_button):
            buttons.addWidget(button)
        column.addLayout(buttons)
        self.poll = QTimer(self)
        self.poll.timeout.connect(self._read_losses)
        self._default_steps()

    def _default_steps(self) -> None:
        """teleop train's default for the picked encoder (a frozen one trains the head alone, for longer)."""
        encoder = self.encoder_combo.currentText()
        frozen = encoder_frozen(encoder, has_weights=bool(self.weights_edit.text().strip()))
        self.steps_spin.setValue(default_steps(encoder, frozen))

    def config(self) -> object:
        """The TrainConfig as entered (it checks itself)."""
        from teleop.train.trainer import TrainConfig

        weights = self.weights_edit.text().strip()
        return TrainConfig(episodes_dir=self.directory, out_dir=Path(self.run_edit.text().strip()).expanduser(),
                           steps=self.steps_spin.value(), eval_every=self.steps_spin.value(),
                           encoder=self.encoder_combo.currentText(), encoder_weights=Path(weights) if weights else None,
                           camera=self.cameras_edit.text().strip() or None)

    def start(self) -> None:
        """Train, then evaluate, on a worker thread."""
        if self.running:
            return
        try:
            config = self.config()
        except TeleopError as exc:
            self.status.say(str(exc), error=True)
            return
        self.rollouts, self.success_rate = None, None
        self.run_dir = Path(self.run_edit.text().strip()).expanduser()
        job = TrainWorker(config, self.eval_spin.value(), self.record_check.isChecked())
        job.line.connect(self.log_label.setText)
        job.finished.connect(self._on_finished)
        job.failed.connect(self._on_failed)
        self.train_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.review_button.setEnabled(False)
        self.curve.setData([], [])
        self.status.say(f"training into {self.run_dir} ...")
        self.poll.start(500)
        self.start_job(job)

    def cancel(self) -> None:
        """Stop at the next training step or rollout."""
        if self.running:
            self.status.say("cancelling ...")
        super().cancel()

    def _read_losses(self) -> None:
        """The loss curve so far, from the run's train_log.jsonl (written as the run goes)."""
        path = self.run_dir / "train_log.jsonl"
        if not path.is_file():
            return
        steps, losses = [], []
        for line in path.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:  # a line being written
                continue
            if "loss" in record and record["loss"] > 0:
                steps.append(record["step"])
                losses.append(record["loss"])
        self.curve.setData(steps, losses)

    def _on_finished(self, success_rate: float, rollouts: str) -> None:
        self._stop_thread()
        if success_rate < 0:
            self.status.say(f"trained: the policy is in {self.run_dir}")
            return
        self.success_rate = success_rate
        self.rollouts = Path(rollouts) if rollouts else None
        where = f"; the rollouts are episodes in {self.rollouts}" if self.rollouts else ""
        self.status.say(f"success rate {success_rate:.0%} on {self.eval_spin.value()} test scenes (policy in "
                  f"{self.run_dir}){where}")
        self.review_button.setEnabled(self.rollouts is not None)

    def _on_failed(self, message: str) -> None:
        self._stop_thread()
        self.status.say(message, error=True)

    def _stop_thread(self) -> None:
        self.poll.stop()
        self._read_losses()
        self.end_job()
        self.train_button.setEnabled(True)
        self.cancel_button.setEnabled(False)

    def _review_rollout(self) -> None:
        if self.rollouts is not None:
            episodes = sorted(self.rollouts.glob("episode_*"))
            if episodes:
                self.review_requested.emit(episodes[0])
