"""Entry point of the desktop app (`teleop gui`)."""

from __future__ import annotations

import signal
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from teleop.deps import require

if TYPE_CHECKING:
    from recorder.cameras import CameraSource


def run_app(out_dir: Path, argv: list[str] | None = None, cameras: Mapping[str, CameraSource] | None = None) -> int:
    """Open the main window recording into `out_dir` and run the Qt event loop until it closes.

    `cameras` (started by the caller) are shown and recorded beside the simulator's.

    Raises:
        MissingDependencyError: PyQt6 or pyqtgraph is not installed.
    """
    widgets = require("PyQt6.QtWidgets", "gui", "the desktop app", package="PyQt6")
    require("pyqtgraph", "gui", "the desktop app")
    from ui.main_window import MainWindow

    app = widgets.QApplication.instance() or widgets.QApplication(list(sys.argv if argv is None else argv))
    window = MainWindow(Path(out_dir), cameras=cameras)
    window.show()
    _close_on_interrupt(app)
    return int(app.exec())


def _close_on_interrupt(app: object) -> None:
    """Ctrl+C in the terminal closes the windows cleanly (a recording is finalised, the simulator released).

    Python runs signal handlers only between bytecodes, so a timer wakes the interpreter now and then.
    """
    from PyQt6.QtCore import QTimer

    signal.signal(signal.SIGINT, lambda *_: app.closeAllWindows())  # type: ignore[attr-defined]
    timer = QTimer(app)  # type: ignore[arg-type]
    timer.timeout.connect(lambda: None)
    timer.start(200)
