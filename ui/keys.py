"""Qt key codes -> the key names KeyboardDevice.press()/release() take."""

from __future__ import annotations

from PyQt6.QtCore import Qt

from devices.keyboard import KEYS

QT_KEY_NAMES: dict[int, str] = {getattr(Qt.Key, f"Key_{name.capitalize()}").value: name for name in KEYS}


def key_name(key: int) -> str | None:
    """The device's name of a Qt key code (QKeyEvent.key()), or None for keys the device does not use."""
    return QT_KEY_NAMES.get(int(key))
