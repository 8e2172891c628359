"""URDF variants the simulator loads: mesh paths made absolute, low-poly visuals, an xArm gripper.

The kinematics layer reads the URDFs of example-robot-data as they are. The simulator needs small changes:
package:// mesh paths resolved (pybullet does not know ROS packages), the Panda's visual meshes swapped for
its collision meshes (the visual ones have ~50x more triangles and make software rendering ~3x slower) and,
for the xArm7, whose URDF has no gripper, a parallel two-finger gripper on `link_eef`.
"""

from __future__ import annotations

import re
from pathlib import Path

from kinematics.robots import RobotSpec, cached_urdf, robots_dir

XARM_GRIPPER_FINGER_TRAVEL_M = 0.04

_XARM_GRIPPER = """
  <link name="gripper_base">
    <visual><origin xyz="0 0 0.02"/><geometry><box size="0.05 0.09 0.04"/></geometry>
      <material name="GripperGrey"><color rgba="0.35 0.35 0.38 1"/></material></visual>
    <collision><origin xyz="0 0 0.02"/><geometry><box size="0.05 0.09 0.04"/></geometry></collision>
    <inertial><mass value="0.3"/><origin xyz="0 0 0.02"/>
      <inertia ixx="3e-4" ixy="0" ixz="0" iyy="3e-4" iyz="0" izz="3e-4"/></inertial>
  </link>
  <joint name="gripper_mount" type="fixed">
    <parent link="link_eef"/><child link="gripper_base"/><origin xyz="0 0 0"/>
  </joint>
{fingers}
"""

_XARM_FINGER = """
  <link name="{name}">
    <visual><origin xyz="0 {y} 0.07"/><geometry><box size="0.02 0.012 0.06"/></geometry>
      <material name="GripperDark"><color rgba="0.15 0.15 0.15 1"/></material></visual>
    <collision><origin xyz="0 {y} 0.07"/><geometry><box size="0.02 0.012 0.06"/></geometry></collision>
    <inertial><mass value="0.05"/><origin xyz="0 {y} 0.07"/>
      <inertia ixx="2e-5" ixy="0" ixz="0" iyy="2e-5" iyz="0" izz="2e-5"/></inertial>
  </link>
  <joint name="{name}_joint" type="prismatic">
    <parent link="gripper_base"/><child link="{name}"/><origin xyz="0 0 0"/>
    <axis xyz="0 {axis} 0"/>
    <limit lower="0" upper="{travel}" effort="40" velocity="0.2"/>
  </joint>
"""

XARM_GRIPPER_JOINTS = ("left_finger_joint", "right_finger_joint")


def sim_gripper_joints(spec: RobotSpec) -> tuple[str, ...]:
    """Finger joints of the simulated gripper (0 = closed, `spec.gripper_open` = open)."""
    return XARM_GRIPPER_JOINTS if spec.name == "xarm7" else spec.gripper_joints


def sim_urdf(spec: RobotSpec) -> Path:
    """Path of the URDF the simulator loads for `spec`, written once into a cache folder."""
    text = spec.urdf_path.read_text()
    text = text.replace("package://example-robot-data/robots/", f"{robots_dir()}/")
    if spec.name == "franka":
        text = re.sub(r"meshes/visual/(\w+)\.dae", r"meshes/collision/\1.stl", text)
    if spec.name == "xarm7":
        text = text.replace("</robot>", _xarm_gripper_xml() + "\n</robot>")
    return cached_urdf(spec.name, text)


def _xarm_gripper_xml() -> str:
    fingers = "".join(
        _XARM_FINGER.format(name=name, y=y, axis=axis, travel=XARM_GRIPPER_FINGER_TRAVEL_M)
        for name, y, axis in (("left_finger", 0.006, 1), ("right_finger", -0.006, -1))
    )
    return _XARM_GRIPPER.format(fingers=fingers)
