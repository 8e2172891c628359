"""Entry point of the desktop app (`teleop gui`)."""

from __future__ import annotations

import ctypes.util
import os
import signal
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from teleop.deps import require
from teleop.errors import TeleopError

if TYPE_CHECKING:
    from recorder.cameras import CameraSource

GUI_NICENESS = 10  # how much lower the window's CPU priority is than the control loop's


def run_app(out_dir: Path, argv: list[str] | None = None, cameras: Mapping[str, CameraSource] | None = None,
            robot: str = "franka", real: str | None = None) -> int:
    """Open the main window recording into `out_dir` and run the Qt event loop until it closes.

    `cameras` (not started: the window's rig process starts them) are shown and recorded beside the simulator's.
    `robot` is picked at the start; `real` is the address of the real robot to drive instead of the simulator.

    Raises:
        MissingDependencyError: PyQt6 or pyqtgraph is not installed.
        TeleopError: There is no display to open the window on.
    """
    widgets = require("PyQt6.QtWidgets", "gui", "the desktop app", package="PyQt6")
    require("pyqtgraph", "gui", "the desktop app")
    from ui.main_window import MainWindow

    if widgets.QApplication.instance() is None:
        check_display(os.environ)

    app = widgets.QApplication.instance() or widgets.QApplication(list(sys.argv if argv is None else argv))
    window = MainWindow(Path(out_dir), robot=robot, cameras=cameras, real=real)
    yield_to_the_loop()
    window.show()
    _close_on_interrupt(app)
    return int(app.exec())


def yield_to_the_loop(niceness: int = GUI_NICENESS) -> None:
    """Lower this process's CPU priority by `niceness`, so that on a busy machine the window waits for the CPU
    rather than the control loop. The rig's process, started with the window, keeps the priority it started with."""
    if hasattr(os, "nice"):
        os.nice(niceness)


def check_display(env: Mapping[str, str]) -> None:
    """On Linux, a display for Qt's default platform, or a TeleopError saying how to get one (Qt itself would
    abort the process with a message about plugins)."""
    if not sys.platform.startswith("linux") or env.get("QT_QPA_PLATFORM"):
        return
    if not env.get("DISPLAY") and not env.get("WAYLAND_DISPLAY"):
        raise TeleopError("no display to open the window on (DISPLAY and WAYLAND_DISPLAY are unset): run teleop gui "
                          "in a desktop session or with ssh -X, or under xvfb-run; teleop record records without a "
                          "window")
    if not env.get("WAYLAND_DISPLAY") and ctypes.util.find_library("xcb-cursor") is None:
        raise TeleopError("Qt needs the xcb-cursor library to open a window on X11: apt-get install libxcb-cursor0 "
                          "(Debian, Ubuntu) or your distribution's xcb-util-cursor")


def _close_on_interrupt(app: object) -> None:
    """Ctrl+C in the terminal closes the windows cleanly (a recording is finalised, the simulator released).

    Python runs signal handlers only between bytecodes, so a timer wakes the interpreter now and then.
    """
    from PyQt6.QtCore import QTimer

    signal.signal(signal.SIGINT, lambda *_: app.closeAllWindows())  # type: ignore[attr-defined]
    timer = QTimer(app)  # type: ignore[arg-type]
    timer.timeout.connect(lambda: None)
    timer.start(200)
