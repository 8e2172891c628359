"""Reviewing an episode in the desktop app, offscreen: scrub and play every camera, trim with the idle cuts,
relabel, delete to the trash and undo from the main window."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import record_scripted

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
pytest.importorskip("PyQt6.QtWidgets")
pytest.importorskip("pyqtgraph")

from PyQt6.QtTest import QTest  # noqa: E402
from PyQt6.QtWidgets import QApplication  # noqa: E402

from recorder.backend import open_episode  # noqa: E402
from recorder.trash import trash_entries  # noqa: E402
from recorder.trim import auto_trim_range  # noqa: E402
from ui.review import ReviewWindow  # noqa: E402


@pytest.fixture
def episode(tmp_path: Path) -> Path:
    """A scripted franka-reach episode, idle at its start."""
    return record_scripted(tmp_path / "episodes", 1, seed=3).episodes[0].path


def test_the_timeline_shows_every_camera_at_the_chosen_step(app: QApplication, episode: Path) -> None:
    window = ReviewWindow(episode)
    window.show()
    with open_episode(episode) as reader:
        cameras, n = reader.camera_names, reader.num_steps
        assert list(window.views) == list(cameras) and window.slider.maximum() == n - 1
        window.slider.setValue(n // 2)
        assert window.step == n // 2 and f"step {n // 2}/{n - 1}" in window.step_label.text()
        for name in cameras:
            np.testing.assert_array_equal(window.views[name].shown, reader.frame(name, n // 2))
        assert window.time_line.value() == pytest.approx(reader.timestamps[n // 2] - reader.timestamps[0])
        period = 1.0 / reader.meta.control_rate_hz
    window.show_step(n - 5)
    started = time.monotonic()
    window.toggle_play()  # from step n-5 to the end at the recorded rate: 4 periods
    while window.timer.isActive():
        QTest.qWait(5)
        assert time.monotonic() - started < 10
    assert window.step == n - 1 and time.monotonic() - started >= 0.9 * 4 * period
    window.close()


def test_idle_cuts_trim_the_episode_and_keep_the_original_in_the_trash(app: QApplication, episode: Path) -> None:
    window = ReviewWindow(episode)
    changes: list[bool] = []
    window.changed.connect(lambda: changes.append(True))
    with open_episode(episode) as reader:
        cuts, n = auto_trim_range(reader), reader.num_steps
    assert cuts.start > 0  # the scripted operator waits before it moves
    window.suggest_cuts()
    assert (window.first_spin.value(), window.last_spin.value()) == (cuts.start, cuts.end - 1)
    low, high = window.region.getRegion()
    assert low == pytest.approx(window.t[cuts.start]) and high == pytest.approx(window.t[cuts.end - 1])
    window.trim()
    assert changes == [True] and window.num_steps == cuts.end - cuts.start
    with open_episode(episode) as reader:
        assert reader.num_steps == cuts.end - cuts.start and reader.attrs["original_num_steps"] == n
    [original] = trash_entries(episode.parent)
    assert original.name == episode.name
    window.close()


def test_labels_are_saved_and_delete_goes_to_the_trash(app: QApplication, episode: Path) -> None:
    window = ReviewWindow(episode)
    trashed: list[object] = []
    window.trashed.connect(trashed.append)
    window.outcome.setCurrentText("failure")
    window.instruction.setText("reach the ball slowly")
    window.note.setText("overshot")
    window.save_labels()
    with open_episode(episode) as reader:
        assert reader.success is False and reader.meta.instruction == "reach the ball slowly"
        assert reader.attrs["note"] == "overshot"
        reader.verify()
    assert window.outcome.currentText() == "failure"  # read back from the file
    window.delete()
    assert not episode.exists() and [e.name for e in trash_entries(episode.parent)] == [episode.name]
    assert len(trashed) == 1 and not window.isVisible()
