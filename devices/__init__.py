"""Operator input devices. Each backend returns DeviceSample from a non-blocking read()."""

from devices.base import Device, DeviceSample

__all__ = ["Device", "DeviceSample"]
