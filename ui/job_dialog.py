"""A dialog that runs one long job (an export, a training run) on a worker thread, so the window stays live."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PyQt6.QtCore import QObject, QThread
from PyQt6.QtWidgets import QDialog, QPushButton


class Job(QObject):
    """Work for a JobDialog: `run` is called on the worker thread; it checks `cancelled` between units of work and
    reports through signals of its own."""

    def __init__(self) -> None:
        super().__init__()
        self.cancelled = False

    def run(self) -> None:
        raise NotImplementedError


class JobDialog(QDialog):
    """Starts a Job on its own QThread (`start_job`), asks it to stop (`cancel`), and waits for it when it ends
    (`end_job`) or when the dialog closes."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)  # type: ignore[arg-type]
        self.thread_: QThread | None = None
        self.job: Any = None  # the running Job (its subclass, for its signals)

    def job_buttons(self, text: str, start: Callable[[], None]) -> tuple[QPushButton, QPushButton]:
        """The button that starts the job (`text`, calling `start`) and Cancel, disabled until a job runs."""
        start_button = QPushButton(text)
        start_button.clicked.connect(start)
        cancel_button = QPushButton("Cancel")
        cancel_button.setEnabled(False)
        cancel_button.clicked.connect(self.cancel)
        return start_button, cancel_button

    @property
    def running(self) -> bool:
        return self.thread_ is not None

    def start_job(self, job: Job) -> None:
        """Run `job` on a new worker thread; connect its signals before calling this."""
        self.job = job
        self.thread_ = QThread(self)
        job.moveToThread(self.thread_)
        self.thread_.started.connect(job.run)
        self.thread_.start()

    def cancel(self) -> None:
        """Ask the job to stop at its next check."""
        if self.job is not None:
            self.job.cancelled = True

    def end_job(self) -> None:
        """Wait for the worker thread to finish and forget the job."""
        if self.thread_ is not None:
            self.thread_.quit()
            self.thread_.wait()
        self.thread_ = self.job = None

    def closeEvent(self, event: Any) -> None:  # noqa: N802 - Qt API
        self.cancel()
        self.end_job()
        super().closeEvent(event)
