"""Which real cameras to record beside the simulator's: a field of NAME=SOURCE specs, as `--camera` takes them,
and a Find button that lists the cameras this machine has (`teleop cameras`) to add one."""

from __future__ import annotations

import threading

from PyQt6.QtCore import pyqtSignal
from PyQt6.QtWidgets import QHBoxLayout, QLineEdit, QMenu, QPushButton, QWidget

from recorder.cameras import CAMERA_SOURCES, CameraSource, FoundCamera, find_cameras, parse_camera
from teleop.errors import TeleopError

FIND_PROBE_S = 0.5  # how long each webcam is streamed while looking for cameras [s]


def parse_cameras(text: str) -> dict[str, CameraSource]:
    """Cameras, not started, from comma-separated NAME=SOURCE specs.

    Raises:
        TeleopError: A spec that parse_camera refuses, or two cameras with one name.
    """
    specs = [spec.strip() for spec in text.split(",") if spec.strip()]
    cameras = dict(parse_camera(spec) for spec in specs)
    if len(cameras) < len(specs):
        raise TeleopError(f"two cameras share a name: {', '.join(specs)}")
    return cameras


def describe(cameras: dict[str, CameraSource]) -> str:
    """The field's text for cameras: their specs, or NAME=(given) for one made without a spec."""
    return ", ".join(camera.spec or f"{name}=(given)" for name, camera in cameras.items())


class CameraPicker(QWidget):
    """Emits `changed(cameras)` when the operator applies a new list (Enter, or a camera added from Find), and
    `problem(text)` when a spec is refused or no camera can be found; `found(list)` comes from the Find thread."""

    changed = pyqtSignal(object)
    problem = pyqtSignal(str)
    found = pyqtSignal(object)

    def __init__(self, cameras: dict[str, CameraSource]) -> None:
        super().__init__()
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        self.field = QLineEdit(describe(cameras))
        self.field.setPlaceholderText("none; e.g. usb=0, side=realsense")
        self.field.setToolTip("Real cameras recorded beside the simulator's, as NAME=SOURCE separated by commas; "
                              f"SOURCE is {', '.join(CAMERA_SOURCES)}. Enter applies them.")
        self.find_button = QPushButton("Find")
        self.find_button.setToolTip("Look for webcams and RealSense cameras on this machine")
        row.addWidget(self.field, stretch=1)
        row.addWidget(self.find_button)
        self.applied = self.field.text()
        self.menu: QMenu | None = None  # the found cameras, after Find
        self.field.editingFinished.connect(self.apply)
        self.find_button.clicked.connect(self.look_for_cameras)
        self.found.connect(self._offer)

    def apply(self) -> None:
        """Parse the field; if it changed and is valid, emit `changed`."""
        text = self.field.text().strip()
        if text == self.applied:
            return
        try:
            cameras = parse_cameras(text)
        except TeleopError as exc:
            self.problem.emit(f"cameras not changed: {exc}")
            return
        self.applied = text
        self.changed.emit(cameras)

    def look_for_cameras(self) -> None:
        """Probe the machine's cameras on a thread; the usable ones are offered in a menu."""
        self.find_button.setEnabled(False)
        self.find_button.setText("Looking ...")
        threading.Thread(target=self._find, name="find cameras", daemon=True).start()

    def _find(self) -> None:
        try:
            self.found.emit(find_cameras(probe_s=FIND_PROBE_S))
        except TeleopError as exc:
            self.found.emit(str(exc))

    def _offer(self, found: list[FoundCamera] | str) -> None:
        self.find_button.setEnabled(True)
        self.find_button.setText("Find")
        if isinstance(found, str):
            self.problem.emit(f"cannot look for cameras: {found}")
            return
        usable = [camera for camera in found if not camera.problem]
        if not usable:
            problems = "; ".join(f"{camera.device}: {camera.problem}" for camera in found)
            self.problem.emit(f"no camera found{': ' + problems if problems else ''}")
            return
        self.menu = QMenu(self)
        for camera in usable:
            size = f", {camera.width}x{camera.height} at {camera.fps:.0f} Hz" if camera.width else ""
            action = self.menu.addAction(f"{camera.source}: {camera.device}{size}")
            if action is not None:
                action.triggered.connect(lambda _=False, source=camera.source: self.add(source))
        self.menu.popup(self.find_button.mapToGlobal(self.find_button.rect().bottomLeft()))

    def add(self, source: str) -> None:
        """Add a camera of SOURCE under the first free name cam1, cam2, ... and apply."""
        names = {spec.partition("=")[0].strip() for spec in self.field.text().split(",")}
        name = next(f"cam{k}" for k in range(1, 100) if f"cam{k}" not in names)
        self.field.setText(", ".join(filter(None, [self.field.text().strip(), f"{name}={source}"])))
        self.apply()
