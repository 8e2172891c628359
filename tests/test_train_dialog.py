"""Training from the desktop app, offscreen: teleop train's and teleop eval's functions on a worker thread, a live
loss curve, the success rate and recorded rollouts to review; Cancel stops between steps."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from conftest import record_scripted

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
pytest.importorskip("PyQt6.QtWidgets")
pytest.importorskip("torch")

from PyQt6.QtTest import QTest  # noqa: E402
from PyQt6.QtWidgets import QApplication  # noqa: E402

from recorder.backend import open_episode  # noqa: E402
from ui.train_dialog import TrainDialog  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def episodes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("train_dialog") / "episodes"
    record_scripted(folder, 3)
    return folder


def _wait_done(dialog: TrainDialog, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while dialog.running:
        assert time.monotonic() < deadline, dialog.status.text()
        QTest.qWait(50)


def test_the_dialog_trains_evaluates_and_offers_the_rollouts(app: QApplication, episodes: Path,
                                                            tmp_path: Path) -> None:
    dialog = TrainDialog(episodes)
    assert dialog.steps_spin.value() == 3000  # teleop train's default for the keypoints encoder
    dialog.run_edit.setText(str(tmp_path / "run"))
    dialog.steps_spin.setValue(60)
    dialog.eval_spin.setValue(2)
    requested: list[Path] = []
    dialog.review_requested.connect(requested.append)
    dialog.start()
    assert dialog.running and not dialog.train_button.isEnabled()
    _wait_done(dialog)
    assert dialog.success_rate is not None and "on 2 test scenes" in dialog.status.text(), dialog.status.text()
    assert (tmp_path / "run" / "policy.pt").is_file()
    steps, losses = dialog.curve.getData()
    assert steps is not None and len(steps) > 10 and steps[-1] == 60  # the whole curve, read from train_log.jsonl
    rollouts = sorted((tmp_path / "run" / "rollouts").glob("episode_*.h5"))
    assert len(rollouts) == 2 and dialog.review_button.isEnabled()
    with open_episode(rollouts[0]) as reader:
        assert reader.meta.operator_device == "policy"
    dialog.review_button.click()
    assert requested == [rollouts[0]]


def test_cancel_stops_training_between_steps(app: QApplication, episodes: Path, tmp_path: Path) -> None:
    dialog = TrainDialog(episodes)
    dialog.encoder_combo.setCurrentText("resnet18")
    assert dialog.steps_spin.value() == 20000  # a frozen encoder's head
    dialog.run_edit.setText(str(tmp_path / "run"))
    dialog.steps_spin.setValue(1_000_000)
    dialog.start()
    deadline = time.monotonic() + 120
    while not (tmp_path / "run" / "train_log.jsonl").is_file():  # encoding done, the steps have begun
        assert time.monotonic() < deadline
        QTest.qWait(50)
    dialog.cancel()
    _wait_done(dialog, 60)
    assert "training stopped after" in dialog.status.text() and not (tmp_path / "run" / "policy.pt").exists()
    dialog.weights_edit.setText(str(tmp_path / "missing.pt"))
    dialog.start()
    _wait_done(dialog, 60)
    assert "missing.pt not found" in dialog.status.text() and "c0392b" in dialog.status.styleSheet()
