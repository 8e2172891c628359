"""The embedded simulator: one robot in pybullet (DIRECT), position-controlled, with cameras."""

from __future__ import annotations

import contextlib
import importlib.util
import threading
import time
from dataclasses import dataclass

import numpy as np

from kinematics.robots import RobotSpec, get_robot
from recorder.step import CameraFrame, CameraInfo
from teleop.assets import sim_gripper_joints, sim_urdf
from teleop.errors import TeleopError, UnknownNameError
from teleop.quiet import native_output_silenced
from teleop.robot import RobotStatus

with native_output_silenced():
    import pybullet as pb
    import pybullet_data

MOUNTED_HAND_JOINT_DAMPING = 0.05  # N m s/rad, see PybulletSim._steady_mounted_hand

# OpenCV camera (x right, y down, z forward) -> OpenGL camera (x right, y up, z backward).
_CV_TO_GL = np.diag([1.0, -1.0, -1.0, 1.0])


@dataclass(frozen=True)
class SimConfig:
    """Simulator settings.

    Attributes:
        physics_hz: Physics step rate [Hz]; each control tick runs a whole number of steps.
        image_size: Camera image (width, height) [px].
        renderer: "auto" (EGL plugin when it loads, TinyRenderer otherwise), "egl" or "tiny".
        cameras: Names of the task's cameras to keep; None keeps them all, () renders none.
    """

    physics_hz: float = 240.0
    image_size: tuple[int, int] = (224, 224)
    renderer: str = "auto"
    cameras: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.renderer not in ("auto", "egl", "tiny"):
            raise UnknownNameError("renderer", self.renderer, ["auto", "egl", "tiny"])
        if self.physics_hz <= 0 or min(self.image_size) <= 0:
            raise TeleopError(f"physics_hz and image_size must be positive, got {self}")


@dataclass(frozen=True)
class CameraSpec:
    """A pinhole camera, fixed in the world or on a robot link.

    Attributes:
        fov_deg: Vertical field of view [deg].
        T_mount_camera: Camera pose in its mount frame (world, or the link), OpenCV convention, (4, 4).
        mount: "world" or the name of a robot link.
        near, far: Clipping planes [m].
    """

    fov_deg: float
    T_mount_camera: np.ndarray
    mount: str = "world"
    near: float = 0.01
    far: float = 5.0


def look_at(eye: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Camera pose T_world_camera (OpenCV convention: z toward `target`, y down, world z up), (4, 4)."""
    z = np.asarray(target, float) - np.asarray(eye, float)
    z /= np.linalg.norm(z)
    x = np.cross(z, [0.0, 0.0, 1.0])
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    T = np.eye(4)
    T[:3, :3] = np.column_stack([x, y, z])
    T[:3, 3] = eye
    return T


def pose_matrix(position: np.ndarray, quat_xyzw: np.ndarray) -> np.ndarray:
    """(4, 4) pose from a position and a pybullet quaternion (x, y, z, w)."""
    T = np.eye(4)
    T[:3, :3] = np.reshape(pb.getMatrixFromQuaternion(quat_xyzw), (3, 3))
    T[:3, 3] = position
    return T


class PybulletSim:
    """One robot on a ground plane in a private pybullet client (DIRECT, no window); a teleop.robot.Robot.

    Use it from the thread that created it: pybullet's EGL renderer is bound to that thread (rendering from
    another thread returns stale images or crashes), so render() refuses other threads.

    The robot base is at the world origin, so world and robot base frames coincide. Joints are
    position-controlled with the URDF's effort and velocity limits; `step(dt)` runs a whole number of physics
    steps. Recorded joints are `spec.joints` followed by the gripper's finger joints.
    """

    def __init__(self, spec: RobotSpec, config: SimConfig = SimConfig(),
                 base_pose: np.ndarray | None = None) -> None:
        self.spec = spec
        self.config = config
        self._thread = threading.get_ident()
        with native_output_silenced():
            self.client = pb.connect(pb.DIRECT)
            self.renderer_name = self._load_renderer(config.renderer)
            pb.setAdditionalSearchPath(pybullet_data.getDataPath(), physicsClientId=self.client)
            pb.setGravity(0, 0, -9.81, physicsClientId=self.client)
            pb.setPhysicsEngineParameter(fixedTimeStep=1.0 / config.physics_hz, physicsClientId=self.client)
            self.plane = pb.loadURDF("plane.urdf", physicsClientId=self.client)
            T = np.eye(4) if base_pose is None else base_pose
            quat = _quat_xyzw(T[:3, :3])
            self.robot = pb.loadURDF(str(sim_urdf(spec)), T[:3, 3].tolist(), quat, useFixedBase=True,
                                     flags=pb.URDF_USE_SELF_COLLISION_EXCLUDE_PARENT,
                                     physicsClientId=self.client)
        self._joint_index, self._link_index = self._index_joints()
        self.gripper_joints = sim_gripper_joints(spec)
        self.joint_names = spec.joints + self.gripper_joints
        self._arm_ids = [self._joint_index[j] for j in spec.joints]
        self._gripper_ids = [self._joint_index[j] for j in self.gripper_joints]
        self._all_ids = self._arm_ids + self._gripper_ids
        self._max_force, self._max_velocity = self._joint_limits()
        self._ee_link = self.link_index(spec.ee_frame)
        if spec.mount is not None:
            self._steady_mounted_hand(get_robot(spec.mount.hand).ee_frame)
        if spec.name == "franka":  # its collision meshes, used as visuals, carry no colours of their own
            for link in range(-1, pb.getNumJoints(self.robot, physicsClientId=self.client)):
                pb.changeVisualShape(self.robot, link, rgbaColor=(0.92, 0.92, 0.92, 1.0), physicsClientId=self.client)
        self.cameras: dict[str, CameraSpec] = {}
        self.offered_cameras: list[str] = []
        self.time_s = 0.0
        self._rendered: set[str] = set()
        self._frames_made: dict[str, int] = {}  # camera -> frames rendered so far (the next frame's seq)

    # --- setup -----------------------------------------------------------------------------------------

    def _load_renderer(self, choice: str) -> str:
        if choice in ("auto", "egl"):
            spec = importlib.util.find_spec("eglRenderer")  # the plugin pybullet's wheel ships
            plugin = -1
            if spec is not None and spec.origin:
                plugin = pb.loadPlugin(spec.origin, "_eglRendererPlugin", physicsClientId=self.client)
            if plugin >= 0:
                return "egl"
            if choice == "egl":
                raise TeleopError("pybullet's EGL renderer plugin did not load: use --renderer tiny")
        return "tiny"

    def _index_joints(self) -> tuple[dict[str, int], dict[str, int]]:
        joints, links = {}, {}
        base_name = pb.getBodyInfo(self.robot, physicsClientId=self.client)[0].decode()
        links[base_name] = -1
        for i in range(pb.getNumJoints(self.robot, physicsClientId=self.client)):
            info = pb.getJointInfo(self.robot, i, physicsClientId=self.client)
            joints[info[1].decode()] = i
            links[info[12].decode()] = i
        return joints, links

    def _joint_limits(self) -> tuple[np.ndarray, np.ndarray]:
        infos = [pb.getJointInfo(self.robot, i, physicsClientId=self.client) for i in self._all_ids]
        force = np.array([info[10] if info[10] > 0 else 100.0 for info in infos])
        velocity = np.array([info[11] if info[11] > 0 else 2.0 for info in infos])
        return force, velocity

    def _steady_mounted_hand(self, root: str) -> None:
        """A hand on an arm: its joints get viscous damping (MOUNTED_HAND_JOINT_DAMPING). The Allegro's URDF has
        none; on a fixed base that is fine, but behind the arm's seven joints a finger moving at 3 rad/s makes
        pybullet's articulated-body solver blow up (the arm flails over a metre within a second). Damped, the
        arm stays put and the fingers track their targets to 0.002 rad."""
        first = self.link_index(root)  # the hand's links come after the arm's in the joined URDF
        for link in range(first, pb.getNumJoints(self.robot, physicsClientId=self.client)):
            pb.changeDynamics(self.robot, link, jointDamping=MOUNTED_HAND_JOINT_DAMPING, physicsClientId=self.client)

    def link_index(self, name: str) -> int:
        try:
            return self._link_index[name]
        except KeyError:
            raise UnknownNameError("link", name, list(self._link_index)) from None

    # --- state -----------------------------------------------------------------------------------------

    def reset(self, q: np.ndarray, gripper: float = 0.0) -> None:
        """Teleport the robot to joint positions `q` (n,) [rad] and gripper 0 open .. 1 closed, at rest."""
        fingers = self._finger_positions(gripper)
        for jid, value in zip(self._all_ids, np.concatenate([q, fingers]), strict=True):
            pb.resetJointState(self.robot, jid, float(value), 0.0, physicsClientId=self.client)
        self.command(np.asarray(q, float), gripper)
        self.time_s = 0.0

    def command(self, q_target: np.ndarray, gripper: float | None = None) -> None:
        """Set position targets for the driven joints (n,) [rad] and the gripper (0 open .. 1 closed)."""
        ids, targets = list(self._arm_ids), list(np.asarray(q_target, float))
        if gripper is not None and self._gripper_ids:
            ids += self._gripper_ids
            targets += list(self._finger_positions(gripper))
        n = len(ids)
        pb.setJointMotorControlArray(
            self.robot, ids, pb.POSITION_CONTROL, targetPositions=targets,
            forces=self._max_force[:n].tolist(), positionGains=[0.3] * n, physicsClientId=self.client,
        )

    def _finger_positions(self, gripper: float) -> np.ndarray:
        width = (1.0 - float(np.clip(gripper, 0.0, 1.0))) * self.spec.gripper_open
        return np.full(len(self._gripper_ids), width)

    def step(self, dt: float) -> None:
        """Advance the simulation by `dt` seconds (rounded to whole physics steps)."""
        for _ in range(max(1, round(dt * self.config.physics_hz))):
            pb.stepSimulation(physicsClientId=self.client)
        self.time_s += dt

    def joint_state(self) -> tuple[np.ndarray, np.ndarray]:
        """Positions and velocities of the recorded joints, each (n + fingers,)."""
        states = pb.getJointStates(self.robot, self._all_ids, physicsClientId=self.client)
        return np.array([s[0] for s in states]), np.array([s[1] for s in states])

    def arm_positions(self) -> np.ndarray:
        """Positions of the driven joints `spec.joints`, (n,) [rad]."""
        return self.joint_state()[0][: len(self._arm_ids)]

    def gripper_width(self) -> float:
        """Sum of the finger joint positions [m] (0 when closed)."""
        return float(self.joint_state()[0][len(self._arm_ids):].sum())

    def link_pose(self, name: str) -> np.ndarray:
        """World pose of a robot link's URDF frame, (4, 4)."""
        return self._link_pose(self.link_index(name))

    def _link_pose(self, link: int) -> np.ndarray:
        if link == -1:  # pybullet reports the base's inertial frame: undo its offset to get the URDF frame
            pos, quat = pb.getBasePositionAndOrientation(self.robot, physicsClientId=self.client)
            inertial = pb.getDynamicsInfo(self.robot, -1, physicsClientId=self.client)[3:5]
            return pose_matrix(np.array(pos), np.array(quat)) @ np.linalg.inv(
                pose_matrix(np.array(inertial[0]), np.array(inertial[1])))
        else:
            state = pb.getLinkState(self.robot, link, computeForwardKinematics=True, physicsClientId=self.client)
            pos, quat = state[4], state[5]
        return pose_matrix(np.array(pos), np.array(quat))

    def ee_pose(self) -> np.ndarray:
        """End-effector pose in the world (= robot base) frame, (4, 4)."""
        return self._link_pose(self._ee_link)

    # --- objects ---------------------------------------------------------------------------------------

    def add_box(self, half_extents: tuple[float, float, float], position: np.ndarray, mass: float,
                rgba: tuple[float, float, float, float], friction: float = 1.0) -> int:
        """A box body; mass 0 makes it static."""
        col = pb.createCollisionShape(pb.GEOM_BOX, halfExtents=half_extents, physicsClientId=self.client)
        vis = pb.createVisualShape(pb.GEOM_BOX, halfExtents=half_extents, rgbaColor=rgba,
                                   physicsClientId=self.client)
        body = pb.createMultiBody(mass, col, vis, list(position), physicsClientId=self.client)
        pb.changeDynamics(body, -1, lateralFriction=friction, physicsClientId=self.client)
        return body

    def add_sphere(self, radius: float, position: np.ndarray, rgba: tuple[float, float, float, float],
                   collide: bool = True) -> int:
        """A static sphere (a target marker when `collide` is False)."""
        col = -1
        if collide:
            col = pb.createCollisionShape(pb.GEOM_SPHERE, radius=radius, physicsClientId=self.client)
        vis = pb.createVisualShape(pb.GEOM_SPHERE, radius=radius, rgbaColor=rgba, physicsClientId=self.client)
        return pb.createMultiBody(0.0, col, vis, list(position), physicsClientId=self.client)

    def body_pose(self, body: int) -> np.ndarray:
        """World pose of a body, (7,): position [m] then quaternion wxyz."""
        pos, (x, y, z, w) = pb.getBasePositionAndOrientation(body, physicsClientId=self.client)
        return np.array([*pos, w, x, y, z])

    def reset_body(self, body: int, pose: np.ndarray) -> None:
        """Teleport a body to `pose` (7,) (position, quaternion wxyz), at rest."""
        w, x, y, z = pose[3:7]
        pb.resetBasePositionAndOrientation(body, list(pose[:3]), [x, y, z, w], physicsClientId=self.client)
        pb.resetBaseVelocity(body, [0, 0, 0], [0, 0, 0], physicsClientId=self.client)

    def in_contact(self, body: int, link: str) -> bool:
        """Whether a robot link touches `body`."""
        return bool(pb.getContactPoints(self.robot, body, linkIndexA=self.link_index(link),
                                        physicsClientId=self.client))

    # --- cameras ---------------------------------------------------------------------------------------

    def add_camera(self, name: str, camera: CameraSpec) -> None:
        """Add a camera, unless SimConfig.cameras leaves it out."""
        self.offered_cameras.append(name)
        if self.config.cameras is not None and name not in self.config.cameras:
            return
        if camera.mount != "world":
            self.link_index(camera.mount)  # fail early on a bad link name
        self.cameras[name] = camera

    def camera_pose(self, name: str) -> np.ndarray:
        """T_world_camera (OpenCV convention) now, (4, 4)."""
        camera = self._camera(name)
        if camera.mount == "world":
            return camera.T_mount_camera
        return self.link_pose(camera.mount) @ camera.T_mount_camera

    def camera_info(self, name: str) -> CameraInfo:
        camera = self._camera(name)
        width, height = self.config.image_size
        f = 0.5 * height / np.tan(np.deg2rad(camera.fov_deg) / 2)
        K = np.array([[f, 0.0, width / 2], [0.0, f, height / 2], [0.0, 0.0, 1.0]])
        return CameraInfo(width, height, K, self.camera_pose(name), camera.mount)

    def render(self, name: str) -> CameraFrame:
        """Render camera `name`: RGB (H, W, 3) uint8, stamped with the monotonic time of capture.

        The frame's seq counts this camera's renders (0, 1, ...), warm-up renders included.
        """
        camera = self._camera(name)
        if threading.get_ident() != self._thread:
            raise TeleopError("the simulator renders only on the thread that created it: create, step and render "
                              "it on one thread (pybullet's EGL context belongs to that thread)")
        width, height = self.config.image_size
        view = np.linalg.inv(self.camera_pose(name) @ _CV_TO_GL)
        projection = pb.computeProjectionMatrixFOV(camera.fov_deg, width / height, camera.near, camera.far)
        renderer = pb.ER_BULLET_HARDWARE_OPENGL if self.renderer_name == "egl" else pb.ER_TINY_RENDERER
        t = time.monotonic()  # the state being rendered is the state at this instant
        with native_output_silenced() if name not in self._rendered else contextlib.nullcontext():
            _, _, rgba, _, _ = pb.getCameraImage(
                width, height, view.T.ravel().tolist(), projection, renderer=renderer,
                flags=pb.ER_NO_SEGMENTATION_MASK, physicsClientId=self.client,
            )
        self._rendered.add(name)
        rgb = np.asarray(rgba, dtype=np.uint8).reshape(height, width, 4)[:, :, :3]
        seq = self._frames_made.get(name, 0)
        self._frames_made[name] = seq + 1
        return CameraFrame(np.ascontiguousarray(rgb), t, seq)

    def _camera(self, name: str) -> CameraSpec:
        try:
            return self.cameras[name]
        except KeyError:
            raise UnknownNameError("camera", name, list(self.cameras)) from None

    def hold(self) -> None:
        """Stop where the robot is: its measured positions become the targets."""
        self.command(self.arm_positions())

    def status(self) -> RobotStatus:
        """Always ok while connected: a simulated robot has no faults."""
        connected = self.client >= 0 and pb.isConnected(self.client)
        return RobotStatus(connected, "" if connected else "the simulator is closed")

    def close(self) -> None:
        if self.client >= 0 and pb.isConnected(self.client):
            with native_output_silenced():
                pb.disconnect(self.client)
        self.client = -1

    def __enter__(self) -> PybulletSim:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _quat_xyzw(R: np.ndarray) -> list[float]:
    from scipy.spatial.transform import Rotation

    return Rotation.from_matrix(R).as_quat().tolist()
