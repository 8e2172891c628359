"""Seeded tasks: scene, randomised initial conditions, an objective success check, a language instruction.

Each task also says what a person demonstrating it would aim for next (`operator_view`): the scripted operator
device turns that into device motion, exactly as a person turns what they see into hand motion.
"""

from __future__ import annotations

import abc
from typing import Any, ClassVar

import numpy as np

from devices.scripted import ArmHandView, ArmView, HandView
from kinematics.robots import RobotSpec, get_robot
from teleop.errors import TeleopError, UnknownNameError
from teleop.sim import CameraSpec, PybulletSim, look_at

RED = (0.85, 0.15, 0.12, 1.0)
# What a task's methods get: the PybulletSim its rig built for the simulated tasks (they narrow it), any
# teleop.robot.Robot for a RealTask, which never looks at it.
SceneRobot = Any


class Task(abc.ABC):
    """A task for one robot. Build the scene once, then reset(seed) before every episode."""

    name: ClassVar[str]
    robot: ClassVar[str]
    instruction: ClassVar[str]
    max_duration_s: ClassVar[float] = 12.0

    @property
    def spec(self) -> RobotSpec:
        return get_robot(self.robot)

    def base_pose(self) -> np.ndarray:
        """Pose of the robot base in the world, (4, 4)."""
        return np.eye(4)

    @abc.abstractmethod
    def build(self, sim: SceneRobot) -> None:
        """Add objects and cameras to a freshly created simulator."""

    @abc.abstractmethod
    def reset(self, sim: SceneRobot, seed: int) -> dict[str, Any]:
        """Randomise the initial conditions; return them as JSON-able state for restore()."""

    @abc.abstractmethod
    def restore(self, sim: SceneRobot, state: dict[str, Any]) -> None:
        """Put the scene back in a state returned by reset() (for replay)."""

    @abc.abstractmethod
    def success(self, sim: SceneRobot) -> bool: ...

    def language_instruction(self) -> str:
        """The instruction for the current episode (call after reset)."""
        return self.instruction

    @abc.abstractmethod
    def operator_view(self, sim: SceneRobot) -> ArmView | HandView | ArmHandView:
        """What a person demonstrating the task looks at and aims for now."""

    def extras(self, sim: SceneRobot) -> dict[str, np.ndarray]:
        """Per-step task state worth recording (object poses)."""
        return {}

    def _reset_robot(self, sim: PybulletSim, rng: np.random.Generator, noise_rad: float) -> list[float]:
        q0 = np.array(self.spec.home) + rng.uniform(-noise_rad, noise_rad, len(self.spec.home))
        sim.reset(q0, 0.0)
        return q0.tolist()


# --- arms ------------------------------------------------------------------------------------------------


def _arm_cameras(sim: PybulletSim, wrist_offset: np.ndarray) -> None:
    front = look_at(np.array([1.1, 0.6, 0.95]), np.array([0.42, 0.0, 0.28]))  # frames the targets and the arm
    sim.add_camera("front", CameraSpec(45.0, front))
    T_ee_camera = np.eye(4)
    T_ee_camera[:3, 3] = wrist_offset
    sim.add_camera("wrist", CameraSpec(75.0, T_ee_camera, mount=sim.spec.ee_frame))


class ReachTask(Task):
    """Move the end effector to a random target (a red ball) within `tolerance_m`."""

    tolerance_m: ClassVar[float] = 0.02
    target_lo: ClassVar[tuple[float, float, float]] = (0.35, -0.25, 0.15)
    target_hi: ClassVar[tuple[float, float, float]] = (0.60, 0.25, 0.45)
    wrist_offset: ClassVar[tuple[float, float, float]] = (0.06, 0.0, -0.1)
    instruction = "move the gripper to the red ball"
    max_duration_s = 10.0

    def build(self, sim: PybulletSim) -> None:
        self.target = sim.add_sphere(0.02, np.array([0.5, 0.0, 0.3]), RED, collide=False)
        _arm_cameras(sim, np.array(self.wrist_offset))

    def reset(self, sim: PybulletSim, seed: int) -> dict[str, Any]:
        rng = np.random.default_rng(seed)
        q0 = self._reset_robot(sim, rng, 0.05)
        ee = sim.ee_pose()[:3, 3]
        while True:  # a target worth reaching for: at least 10 cm away
            target = rng.uniform(self.target_lo, self.target_hi)
            if np.linalg.norm(target - ee) > 0.10:
                break
        state = {"q0": q0, "target": target.tolist()}
        self.restore(sim, state)
        return state

    def restore(self, sim: PybulletSim, state: dict[str, Any]) -> None:
        sim.reset(np.array(state["q0"]), 0.0)
        sim.reset_body(self.target, np.array([*state["target"], 1.0, 0.0, 0.0, 0.0]))

    def target_position(self, sim: PybulletSim) -> np.ndarray:
        return sim.body_pose(self.target)[:3]

    def success(self, sim: PybulletSim) -> bool:
        return bool(np.linalg.norm(sim.ee_pose()[:3, 3] - self.target_position(sim)) < self.tolerance_m)

    def operator_view(self, sim: PybulletSim) -> ArmView:
        return ArmView(ee_pos=sim.ee_pose()[:3, 3], goal_pos=self.target_position(sim), close_gripper=False)

    def extras(self, sim: PybulletSim) -> dict[str, np.ndarray]:
        return {"target_pos": self.target_position(sim)}


class FrankaReach(ReachTask):
    name = "franka-reach"
    robot = "franka"


class XArm7Reach(ReachTask):
    name = "xarm7-reach"
    robot = "xarm7"
    target_lo = (0.30, -0.25, 0.20)
    target_hi = (0.55, 0.25, 0.45)
    wrist_offset = (0.07, 0.0, 0.0)
    instruction = "move the end effector to the red ball"


class FrankaPick(Task):
    """Grasp a 4 cm cube on the ground and lift it at least 8 cm."""

    name = "franka-pick"
    robot = "franka"
    instruction = "pick up the red cube and lift it"
    max_duration_s = 15.0
    half_size = 0.02
    lift_m = 0.08

    def build(self, sim: PybulletSim) -> None:
        self.cube = sim.add_box((self.half_size,) * 3, np.array([0.5, 0.0, self.half_size]), 0.1, RED, 1.5)
        _arm_cameras(sim, np.array([0.06, 0.0, -0.1]))
        self._phase = "approach"

    def reset(self, sim: PybulletSim, seed: int) -> dict[str, Any]:
        rng = np.random.default_rng(seed)
        q0 = self._reset_robot(sim, rng, 0.05)
        xy = rng.uniform([0.40, -0.15], [0.60, 0.15])
        yaw = rng.uniform(-0.3, 0.3)
        cube = [xy[0], xy[1], self.half_size, np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)]
        state = {"q0": q0, "cube": [float(v) for v in cube]}
        self.restore(sim, state)
        return state

    def restore(self, sim: PybulletSim, state: dict[str, Any]) -> None:
        sim.reset(np.array(state["q0"]), 0.0)
        sim.reset_body(self.cube, np.array(state["cube"]))
        self._phase = "approach"

    def success(self, sim: PybulletSim) -> bool:
        return bool(sim.body_pose(self.cube)[2] > self.half_size + self.lift_m)

    def operator_view(self, sim: PybulletSim) -> ArmView:
        """Approach above the cube, descend, close, lift: the plan a person follows, step by step."""
        ee = sim.ee_pose()[:3, 3]
        cube = sim.body_pose(self.cube)[:3]
        above = cube + np.array([0.0, 0.0, 0.10])
        grasp = cube + np.array([0.0, 0.0, 0.005])
        if self._phase == "approach" and np.linalg.norm(ee - above) < 0.015:
            self._phase = "descend"
        if self._phase == "descend" and np.linalg.norm(ee - grasp) < 0.01:
            self._phase, self._closing_since = "close", sim.time_s
        if self._phase == "close" and sim.time_s - self._closing_since > 0.6:
            self._phase = "lift"
        goal = {"approach": above, "descend": grasp, "close": grasp, "lift": grasp + [0.0, 0.0, 0.15]}
        return ArmView(ee_pos=ee, goal_pos=goal[self._phase], close_gripper=self._phase in ("close", "lift"))

    def extras(self, sim: PybulletSim) -> dict[str, np.ndarray]:
        return {"object_pose": sim.body_pose(self.cube)}


# --- hand ------------------------------------------------------------------------------------------------

ALLEGRO_FINGERS = ("index", "middle", "ring", "thumb")


class FingertipTouch(Task):
    """Touch a red ball with one named fingertip of an Allegro hand: index, middle or ring, picked per scene."""

    instruction = "touch the red ball with the {finger} fingertip"
    radius = 0.012
    tolerance_m = 0.015  # fingertip centre to ball surface: the tip sphere (12 mm) plus 3 mm
    finger = 0
    ball: int  # the ball's body, made by build()

    @staticmethod
    def _pick_finger(rng: np.random.Generator, q_hand: np.ndarray) -> tuple[int, np.ndarray]:
        """A finger and a pose of it: the hand joints q_hand (16,) with that finger's four joints drawn."""
        finger = int(rng.integers(0, 3))  # index, middle, ring
        q = np.array(q_hand, dtype=float)
        q[4 * finger : 4 * finger + 4] = rng.uniform([-0.15, 0.5, 0.4, 0.3], [0.15, 1.1, 1.0, 0.8])
        return finger, q

    def language_instruction(self) -> str:
        return self.instruction.format(finger=ALLEGRO_FINGERS[self.finger])

    def extras(self, sim: PybulletSim) -> dict[str, np.ndarray]:
        return {"target_pos": sim.body_pose(self.ball)[:3]}


class AllegroReach(FingertipTouch):
    """Palm up; touch a ball held above the palm with one named fingertip (after MVP's Allegro reach)."""

    name = "allegro-reach"
    robot = "allegro"
    max_duration_s = 8.0

    def base_pose(self) -> np.ndarray:
        """Palm facing up (palm +x -> world +z), fingers pointing along world +x, 25 cm above the ground."""
        T = np.eye(4)
        T[:3, :3] = np.column_stack([[0.0, 0.0, 1.0], [0.0, -1.0, 0.0], [1.0, 0.0, 0.0]])
        T[:3, 3] = [0.0, 0.0, 0.25]
        return T

    def build(self, sim: PybulletSim) -> None:
        from kinematics.robot_model import load_model

        self.model = load_model(self.spec)
        self.ball = sim.add_sphere(self.radius, np.array([0.1, 0.0, 0.3]), RED, collide=True)
        sim.add_camera("front", CameraSpec(45.0, look_at(np.array([0.42, 0.28, 0.55]),
                                                         np.array([0.06, 0.0, 0.26]))))
        self.finger = 0

    def reset(self, sim: PybulletSim, seed: int) -> dict[str, Any]:
        """Pick a finger and a pose of it; the ball sits where that pose puts the fingertip, pushed out a bit."""
        rng = np.random.default_rng(seed)
        q0 = self._reset_robot(sim, rng, 0.05)
        finger, q = self._pick_finger(rng, np.array(self.spec.home))
        T_palm_tip = self.model.fk(q, self.spec.fingertip_frames[finger])
        p_world = (self.base_pose() @ np.append(T_palm_tip[:3, 3], 1.0))[:3]
        state = {"q0": q0, "finger": finger, "ball": p_world.tolist()}
        self.restore(sim, state)
        return state

    def restore(self, sim: PybulletSim, state: dict[str, Any]) -> None:
        sim.reset(np.array(state["q0"]), 0.0)
        self.finger = int(state["finger"])
        sim.reset_body(self.ball, np.array([*state["ball"], 1.0, 0.0, 0.0, 0.0]))

    def _tip_and_ball_in_palm(self, sim: PybulletSim) -> tuple[np.ndarray, np.ndarray]:
        T_palm_world = np.linalg.inv(sim.ee_pose())
        tip = sim.link_pose(self.spec.fingertip_frames[self.finger])[:3, 3]
        ball = sim.body_pose(self.ball)[:3]
        return (T_palm_world @ np.append(tip, 1.0))[:3], (T_palm_world @ np.append(ball, 1.0))[:3]

    def success(self, sim: PybulletSim) -> bool:
        tip, ball = self._tip_and_ball_in_palm(sim)
        touching = sim.in_contact(self.ball, self.spec.fingertip_frames[self.finger])
        return touching or bool(np.linalg.norm(tip - ball) < self.radius + self.tolerance_m)

    def operator_view(self, sim: PybulletSim) -> HandView:
        tip, ball = self._tip_and_ball_in_palm(sim)
        return HandView(finger=ALLEGRO_FINGERS[self.finger], tip_pos=tip, goal_pos=ball)


# --- arm with a hand ------------------------------------------------------------------------------------


class XArm7AllegroReach(FingertipTouch):
    """Bring the hand to a ball in front of the arm and touch it with one named fingertip: the setup of MVP's
    Quest-hands work (the wrist drives the arm, the fingers the hand) as one robot."""

    name = "xarm7-allegro-reach"
    robot = "xarm7-allegro"
    max_duration_s = 12.0
    near_m = 0.03  # the wrist this close to where it should be: the person aims the finger at the ball itself

    def build(self, sim: PybulletSim) -> None:
        from kinematics.robot_model import load_model

        mount = self.spec.mount
        assert mount is not None
        self.flange = mount.parent
        self.hand_model = load_model(mount.hand)
        # A marker without collision: success is the fingertip's distance to it.
        self.ball = sim.add_sphere(self.radius, np.array([0.4, 0.0, 0.2]), RED, collide=False)
        # One camera, facing the palm (the ball in view in all of 60 scenes): a render takes ~35-40 ms here, and a
        # second camera would not fit a 20 Hz tick. From above and in front, policies did worse (RESULTS.md).
        sim.add_camera("front", CameraSpec(55.0, look_at(np.array([1.0, 0.12, 0.45]), np.array([0.45, 0.0, 0.22]))))
        self.finger, self._flange_goal, self._tip_goal = 0, np.zeros(3), np.zeros(3)

    def reset(self, sim: PybulletSim, seed: int) -> dict[str, Any]:
        """Pick a finger, a pose of it and a place for the wrist 8-25 cm away, forward or sideways, at the start's
        orientation; the ball sits where that puts the fingertip."""
        rng = np.random.default_rng(seed)
        q0 = self._reset_robot(sim, rng, 0.05)
        T_flange = sim.link_pose(self.flange)
        T_flange_palm = np.linalg.inv(T_flange) @ sim.ee_pose()
        finger, q_hand = self._pick_finger(rng, self.hand_model.home)
        tip_palm = self.hand_model.fk(q_hand, self.spec.fingertip_frames[finger])[:3, 3]
        while True:
            shift = rng.uniform((0.0, -0.15, -0.04), (0.15, 0.15, 0.10))  # forward: the ball is not behind the hand
            if np.linalg.norm(shift) > 0.08:
                break
        flange_goal = T_flange[:3, 3] + shift
        ball = flange_goal + T_flange[:3, :3] @ (T_flange_palm @ np.append(tip_palm, 1.0))[:3]
        state = {"q0": q0, "finger": finger, "ball": ball.tolist(), "flange_goal": flange_goal.tolist(),
                 "tip_goal": tip_palm.tolist()}
        self.restore(sim, state)
        return state

    def restore(self, sim: PybulletSim, state: dict[str, Any]) -> None:
        sim.reset(np.array(state["q0"]), 0.0)
        self.finger = int(state["finger"])
        self._flange_goal, self._tip_goal = np.array(state["flange_goal"]), np.array(state["tip_goal"])
        sim.reset_body(self.ball, np.array([*state["ball"], 1.0, 0.0, 0.0, 0.0]))

    def _in_palm(self, sim: PybulletSim, p_world: np.ndarray) -> np.ndarray:
        return (np.linalg.inv(sim.ee_pose()) @ np.append(p_world, 1.0))[:3]

    def success(self, sim: PybulletSim) -> bool:
        tip = sim.link_pose(self.spec.fingertip_frames[self.finger])[:3, 3]
        return bool(np.linalg.norm(tip - sim.body_pose(self.ball)[:3]) < self.radius + self.tolerance_m)

    def operator_view(self, sim: PybulletSim) -> ArmHandView:
        """The wrist toward where the hand should be; the finger to its planned pose on the way, then, once the
        wrist is near, onto the ball itself."""
        flange = sim.link_pose(self.flange)[:3, 3]
        tip = self._in_palm(sim, sim.link_pose(self.spec.fingertip_frames[self.finger])[:3, 3])
        near = np.linalg.norm(self._flange_goal - flange) < self.near_m
        goal = self._in_palm(sim, sim.body_pose(self.ball)[:3]) if near else self._tip_goal
        return ArmHandView(wrist=ArmView(ee_pos=flange, goal_pos=self._flange_goal, close_gripper=False),
                           fingers=HandView(finger=ALLEGRO_FINGERS[self.finger], tip_pos=tip, goal_pos=goal))


TASKS: dict[str, type[Task]] = {
    t.name: t for t in (FrankaReach, FrankaPick, XArm7Reach, AllegroReach, XArm7AllegroReach)
}
DEFAULT_TASK = {"franka": "franka-reach", "xarm7": "xarm7-reach", "allegro": "allegro-reach",
                "xarm7-allegro": "xarm7-allegro-reach"}


class RealTask(Task):
    """A task on a real robot: the named task's instruction and length, without its scene or success check (the
    operator labels each take's outcome). reset() leaves the robot where it stands: nothing moves before the
    operator engages."""

    def build(self, sim: SceneRobot) -> None:
        pass

    def reset(self, sim: SceneRobot, seed: int) -> dict[str, Any]:
        return {}

    def restore(self, sim: SceneRobot, state: dict[str, Any]) -> None:
        pass

    def success(self, sim: SceneRobot) -> bool:
        return False

    def operator_view(self, sim: SceneRobot) -> ArmView | HandView | ArmHandView:
        raise TeleopError("the scripted operator needs the simulator's scene; a real robot is driven by a person")


def real_task(name: str) -> Task:
    """The task `name` as it runs on a real robot (RealTask)."""
    task = TASKS.get(name)
    if task is None:
        raise UnknownNameError("task", name, list(TASKS))
    attributes = {"name": task.name, "robot": task.robot, "instruction": task.instruction,
                  "max_duration_s": task.max_duration_s}
    return type(f"Real{task.__name__}", (RealTask,), attributes)()


def make_task(name: str) -> Task:
    try:
        return TASKS[name]()
    except KeyError:
        raise UnknownNameError("task", name, list(TASKS)) from None
