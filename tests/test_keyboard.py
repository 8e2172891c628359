"""KeyboardDevice: axes from held keys, toggles on presses, taps between reads, lifecycle, thread-safety."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest

from devices.keyboard import AXES, AXIS_KEYS, KEY_MAP, KEYS, KeyboardDevice
from teleop.errors import DeviceNotConnectedError


@pytest.fixture
def keyboard(clock: Any) -> KeyboardDevice:
    device = KeyboardDevice(clock=clock)
    device.connect()
    return device


def test_held_keys_are_axes_and_releasing_returns_to_zero(keyboard: KeyboardDevice, clock: Any) -> None:
    keyboard.press("w")
    keyboard.press("Q")  # any case
    for _ in range(3):  # held: the same every read
        clock.sleep(0.02)
        sample = keyboard.read()
        assert sample.axes == {**dict.fromkeys(AXES, 0.0), "forward": 1.0, "yaw": 1.0}
    keyboard.release("w")
    keyboard.release("q")
    sample = keyboard.read()  # released before this read, but pressed after the previous one: still down
    sample = keyboard.read()
    assert sample.axes == dict.fromkeys(AXES, 0.0)


@pytest.mark.parametrize("axis", AXES)
def test_each_key_pair_drives_its_axis_and_opposite_keys_cancel(keyboard: KeyboardDevice, axis: str) -> None:
    plus, minus = AXIS_KEYS[axis]
    keyboard.press(minus)
    assert keyboard.read().axes[axis] == -1.0
    keyboard.press(plus)
    sample = keyboard.read()
    assert sample.axes[axis] == 0.0
    assert all(value == 0.0 for value in sample.axes.values())
    keyboard.release(minus)
    assert keyboard.read().axes[axis] == 1.0


def test_space_toggles_engagement_on_the_press_not_while_held(keyboard: KeyboardDevice) -> None:
    assert not keyboard.read().engaged
    keyboard.press("space")
    keyboard.press("space")  # auto-repeat while held: no second toggle
    assert keyboard.read().engaged and keyboard.read().engaged
    keyboard.release("space")
    assert keyboard.read().engaged
    keyboard.press("space")
    keyboard.release("space")
    assert not keyboard.read().engaged


def test_buttons_report_keys_down_and_a_tap_between_reads_is_seen_once(keyboard: KeyboardDevice) -> None:
    sample = keyboard.read()
    assert set(sample.buttons) == set(KEYS) and not any(sample.buttons.values())
    keyboard.press("g")
    assert keyboard.read().buttons["g"]
    assert keyboard.read().buttons["g"]  # held
    keyboard.release("g")
    assert not keyboard.read().buttons["g"]
    keyboard.press("g")
    keyboard.release("g")
    assert keyboard.read().buttons["g"]  # tapped between two reads
    assert not keyboard.read().buttons["g"]


def test_the_keyboard_has_no_pose_and_leaves_the_gripper_to_the_mapping(keyboard: KeyboardDevice) -> None:
    keyboard.press("g")
    sample = keyboard.read()
    assert sample.T_world_device is None
    assert sample.gripper == 0.0


def test_finger_keys_curl_the_hand_while_held(keyboard: KeyboardDevice, clock: Any) -> None:
    open_hand = keyboard.read().keypoints
    assert open_hand is not None and open_hand.shape == (21, 3)
    keyboard.press("2")  # index
    for _ in range(50):
        clock.sleep(0.02)
        curled = keyboard.read().keypoints
    assert curled is not None
    index_tip_drop = np.linalg.norm(open_hand[8] - open_hand[0]) - np.linalg.norm(curled[8] - curled[0])
    assert index_tip_drop > 0.03
    np.testing.assert_allclose(curled[12], open_hand[12], atol=1e-12)  # the middle finger did not move
    keyboard.release("2")
    for _ in range(50):
        clock.sleep(0.02)
        relaxed = keyboard.read().keypoints
    assert relaxed is not None
    np.testing.assert_allclose(relaxed, open_hand, atol=1e-12)


def test_read_before_connect_raises_and_keys_sent_before_connect_are_kept(clock: Any) -> None:
    device = KeyboardDevice(clock=clock)
    with pytest.raises(DeviceNotConnectedError, match="connect"):
        device.read()
    device.press("space")
    device.press("a")
    device.connect()
    sample = device.read()
    assert sample.engaged and sample.axes["left"] == 1.0
    device.disconnect()
    device.connect()
    sample = device.read()
    assert not sample.engaged and sample.axes["left"] == 0.0


def test_unknown_keys_are_ignored(keyboard: KeyboardDevice) -> None:
    keyboard.press("F12")
    keyboard.release("nonsense")
    sample = keyboard.read()
    assert "f12" not in sample.buttons and not any(sample.axes.values())


def test_key_map_names_every_key_group() -> None:
    assert "engage" in KEY_MAP["space"]
    assert {"w / s", "a / d", "r / f", "l / j", "i / k", "q / e", "g", "= / -", "1-5"} <= set(KEY_MAP)
    assert len(KEYS) == len(set(KEYS))


def test_presses_from_another_thread_while_reading(keyboard: KeyboardDevice) -> None:
    errors: list[BaseException] = []
    done = threading.Event()

    def typist() -> None:
        try:
            for k in range(2000):
                key = KEYS[k % len(KEYS)]
                keyboard.press(key)
                keyboard.release(key)
        except Exception as exc:  # reported to the main thread
            errors.append(exc)
        finally:
            done.set()

    thread = threading.Thread(target=typist)
    thread.start()
    reads = 0
    while not done.is_set() or reads < 10:
        sample = keyboard.read()
        assert all(value in (-1.0, 0.0, 1.0) for value in sample.axes.values())
        assert sample.keypoints is not None and np.isfinite(sample.keypoints).all()
        reads += 1
    thread.join(timeout=10)
    assert not errors and not thread.is_alive()
    for key in KEYS:
        keyboard.release(key)
    keyboard.read()
    assert not any(keyboard.read().buttons.values())
