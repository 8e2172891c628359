"""Exporting from the desktop app, offscreen: the dialog runs teleop export's function on a worker thread, shows
its progress, and a cancelled export leaves nothing behind."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from conftest import record_scripted

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
pytest.importorskip("PyQt6.QtWidgets")
h5py = pytest.importorskip("h5py")

from PyQt6.QtTest import QTest  # noqa: E402
from PyQt6.QtWidgets import QApplication  # noqa: E402

from ui.export_dialog import ExportDialog  # noqa: E402


@pytest.fixture(scope="module")
def episodes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three scripted franka-reach episodes."""
    folder = tmp_path_factory.mktemp("export_dialog") / "episodes"
    record_scripted(folder, 3)
    return folder


def _wait_done(dialog: ExportDialog) -> None:
    deadline = time.monotonic() + 120
    while dialog.running:
        assert time.monotonic() < deadline, dialog.status.text()
        QTest.qWait(20)


def test_the_dialog_exports_a_dataset_that_reads_back(app: QApplication, episodes: Path, tmp_path: Path) -> None:
    dialog = ExportDialog(episodes)
    dialog.format_combo.setCurrentIndex(dialog.format_combo.findData("robomimic"))
    out = tmp_path / "reach.hdf5"
    dialog.out_edit.setText(str(out))
    dialog.size_edit.setText("32x32")
    seen: list[tuple[int, int]] = []
    dialog.bar.valueChanged.connect(lambda v: seen.append((v, dialog.bar.maximum())))
    dialog.start()
    assert dialog.running and not dialog.export_button.isEnabled()
    _wait_done(dialog)
    assert "robomimic" in dialog.status.text() and dialog.status.styleSheet() == ""
    assert seen and seen[-1][0] == seen[-1][1] and len(seen) > 1  # the bar moved up to full
    with h5py.File(out, "r") as f:
        demos = sorted(f["data"])
        assert len(demos) == 3
        assert f["data"][demos[0]]["obs"]["front_image"].shape[1:] == (32, 32, 3)


def test_a_cancelled_export_leaves_nothing_and_bad_options_are_named(app: QApplication, episodes: Path,
                                                                     tmp_path: Path) -> None:
    dialog = ExportDialog(episodes)
    out = tmp_path / "cancelled"
    dialog.out_edit.setText(str(out))
    dialog.format_combo.setCurrentIndex(dialog.format_combo.findData("diffusion-policy"))
    dialog.start()
    dialog.cancel()
    _wait_done(dialog)
    assert "cancelled: nothing was written" in dialog.status.text()
    assert list(tmp_path.iterdir()) == []  # neither the dataset nor its temporary folder
    dialog.size_edit.setText("big")
    dialog.start()
    assert not dialog.running and "image size 'big'" in dialog.status.text()
    dialog.size_edit.clear()
    dialog.out_edit.setText(str(tmp_path))  # exists: exports never overwrite
    dialog.start()
    _wait_done(dialog)
    assert "already exists" in dialog.status.text()
