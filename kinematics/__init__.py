"""Kinematics: robot models (FK, Jacobians), arm IK, hand retargeting, device-to-robot mapping.

Import the modules you need (`kinematics.robot_model`, `kinematics.arm_ik`, `kinematics.hand_retarget`,
`kinematics.mapping`); this package imports nothing on its own.
"""
