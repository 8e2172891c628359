"""The robots we support: where their URDF is, which joints are driven, which frame is the end effector.

URDFs come from the `example-robot-data` package (installed with this project). A robot made of an arm with a
hand at its flange (`Mount`) gets a URDF of both, joined by a fixed joint, written once into a cache folder.
"""

from __future__ import annotations

import hashlib
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from teleop.errors import TeleopError, UnknownNameError

ALLEGRO_JOINTS = tuple(f"joint_{i}.0" for i in range(16))  # index 0-3, middle 4-7, ring 8-11, thumb 12-15


@dataclass(frozen=True)
class Mount:
    """A hand fixed to a link of an arm.

    Attributes:
        hand: The hand robot's name (its URDF's root link is joined to `parent`).
        parent: The arm's link the hand is fixed to (its tool flange).
        xyz: Position of the hand's root frame in the parent link's frame [m].
        rpy: Its orientation, roll-pitch-yaw [rad], as a URDF origin.
    """

    hand: str
    parent: str
    xyz: tuple[float, float, float] = (0.0, 0.0, 0.0)
    rpy: tuple[float, float, float] = (0.0, 0.0, 0.0)


@dataclass(frozen=True)
class RobotSpec:
    """Static description of one robot.

    Attributes:
        name: Short name used on the command line.
        urdf: Path of the URDF relative to example-robot-data's `robots/` folder.
        kind: "arm" (end-effector pose -> IK), "hand" (keypoints -> retargeting) or "arm-hand" (an arm with a
            hand at its flange: the wrist pose -> IK of the arm, the keypoints -> retargeting of the hand).
        joints: Joints driven by IK / retargeting, in command order.
        ee_frame: URDF frame of the end effector (arms: tool centre point; hand: palm).
        home: Joint positions of `joints` at reset [rad].
        gripper_joints: Prismatic finger joints of a parallel gripper (arms), empty if none in the URDF.
        gripper_open: Finger joint position when open [m]; closed is 0.
        fingertip_frames: Hands: fingertip frames in the order index, middle, ring, thumb.
        mount: An arm with a hand: which hand, at which link; `urdf` is then the arm's.
    """

    name: str
    urdf: str
    kind: str
    joints: tuple[str, ...]
    ee_frame: str
    home: tuple[float, ...]
    gripper_joints: tuple[str, ...] = ()
    gripper_open: float = 0.0
    fingertip_frames: tuple[str, ...] = ()
    mount: Mount | None = None

    @property
    def urdf_path(self) -> Path:
        if self.mount is not None:
            return _mounted_urdf(self.name, robots_dir() / self.urdf, self.mount)
        return robots_dir() / self.urdf

    @property
    def has_gripper(self) -> bool:
        return self.kind == "arm"

    @property
    def action_dim(self) -> int:
        """Joint targets, plus one gripper command in [0, 1] for arms."""
        return len(self.joints) + (1 if self.has_gripper else 0)

    @property
    def action_names(self) -> tuple[str, ...]:
        return self.joints + (("gripper",) if self.has_gripper else ())


ROBOTS: dict[str, RobotSpec] = {
    "franka": RobotSpec(
        name="franka",
        urdf="panda_description/urdf/panda.urdf",
        kind="arm",
        joints=tuple(f"panda_joint{i}" for i in range(1, 8)),
        ee_frame="panda_hand_tcp",
        home=(0.0, -0.3, 0.0, -2.2, 0.0, 1.9, 0.785),
        gripper_joints=("panda_finger_joint1", "panda_finger_joint2"),
        gripper_open=0.04,
    ),
    "xarm7": RobotSpec(
        name="xarm7",
        urdf="xarm_description/urdf/xarm7.urdf",
        kind="arm",
        joints=tuple(f"joint{i}" for i in range(1, 8)),
        ee_frame="link_eef",
        home=(0.0, -0.3, 0.0, 0.9, 0.0, 1.2, 0.0),
        gripper_open=0.04,  # the URDF has no gripper; the simulator adds a parallel one at link_eef
    ),
    "allegro": RobotSpec(
        name="allegro",
        urdf="allegro_hand_description/urdf/allegro_right_hand.urdf",
        kind="hand",
        joints=ALLEGRO_JOINTS,
        ee_frame="palm_link",
        home=(0.0, 0.2, 0.2, 0.2) * 3 + (0.6, 0.2, 0.2, 0.2),
        fingertip_frames=("link_3.0_tip", "link_7.0_tip", "link_11.0_tip", "link_15.0_tip"),
    ),
}
ROBOTS["xarm7-allegro"] = RobotSpec(
    name="xarm7-allegro",
    urdf=ROBOTS["xarm7"].urdf,
    kind="arm-hand",
    joints=ROBOTS["xarm7"].joints + ALLEGRO_JOINTS,
    ee_frame="palm_link",
    home=ROBOTS["xarm7"].home + ROBOTS["allegro"].home,
    fingertip_frames=ROBOTS["allegro"].fingertip_frames,
    # The palm's wrist end on the flange, the fingers along the flange's axis; at home the palm faces forward.
    mount=Mount(hand="allegro", parent="link_eef", xyz=(0.0, 0.0, 0.1), rpy=(0.0, 0.0, 0.0)),
)


def get_robot(name: str) -> RobotSpec:
    try:
        return ROBOTS[name]
    except KeyError:
        raise UnknownNameError("robot", name, list(ROBOTS)) from None


def arm_of(spec: RobotSpec) -> RobotSpec:
    """The arm of a robot with a mounted hand (the arm robot with the same URDF).

    Raises:
        TeleopError: `spec` has no hand mounted on an arm we know.
    """
    arm = next((r for r in ROBOTS.values() if r.kind == "arm" and r.urdf == spec.urdf), None)
    if spec.mount is None or arm is None:
        raise TeleopError(f"robot {spec.name!r} is not an arm with a hand mounted on it")
    return arm


def robots_dir() -> Path:
    """example-robot-data's `robots/` folder (a cmeel package: under site-packages/cmeel.prefix)."""
    candidates = [Path(p) / "cmeel.prefix/share/example-robot-data/robots" for p in sys.path if p]
    candidates.append(Path(sys.prefix) / "share/example-robot-data/robots")
    for path in candidates:
        if path.is_dir():
            return path
    raise TeleopError(
        "the robot descriptions of example-robot-data were not found: run  pip install example-robot-data"
    )


def _mounted_urdf(name: str, arm_urdf: Path, mount: Mount) -> Path:
    """The arm's URDF with the hand's links and joints added, its root fixed to `mount.parent`."""
    hand = get_robot(mount.hand)
    arm_text = arm_urdf.read_text()
    hand_text = hand.urdf_path.read_text()
    body = re.search(r"<robot[^>]*>(.*)</robot>", hand_text, flags=re.DOTALL)
    root = re.search(r'<link\s+name="([^"]+)"', hand_text)
    if body is None or root is None:
        raise TeleopError(f"the URDF of {hand.name} ({hand.urdf_path}) has no <robot> with links")
    joint = (
        f'\n  <joint name="{mount.hand}_mount" type="fixed">\n    <parent link="{mount.parent}"/>\n'
        f'    <child link="{root.group(1)}"/>\n    <origin xyz="{" ".join(map(str, mount.xyz))}" '
        f'rpy="{" ".join(map(str, mount.rpy))}"/>\n  </joint>\n'
    )
    return cached_urdf(name, arm_text.replace("</robot>", body.group(1) + joint + "</robot>"))


def cached_urdf(name: str, text: str) -> Path:
    """A generated URDF written once into a cache folder, named by its robot and content."""
    digest = hashlib.sha1(text.encode()).hexdigest()[:12]
    path = Path(tempfile.gettempdir()) / "teleop-urdf" / f"{name}-{digest}.urdf"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{digest}.tmp")
        tmp.write_text(text)
        tmp.replace(path)
    return path
