"""The SO-ARM101, defined once: joint names, limits and geometry used by every other part of
genpol (description.py derives the URDF and MJCF from here; forward_kinematics is their numpy twin).

Units follow ROS: radians and radians per second. The gripper joint is the moving jaw's angle
(0 = closed). Limits follow the public SO-101 description; velocity limits are conservative
for the Feetech STS3215 servos (about 0.22 s per 60 degrees at 7.4 V, i.e. ~4.7 rad/s).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class JointLimit:
    name: str
    lower: float  # rad
    upper: float  # rad
    max_velocity: float  # rad/s
    max_effort: float  # N m


JOINTS: tuple[JointLimit, ...] = (
    JointLimit("shoulder_pan", -1.91986, 1.91986, 3.0, 2.9),
    JointLimit("shoulder_lift", -1.74533, 1.74533, 3.0, 2.9),
    JointLimit("elbow_flex", -1.69, 1.69, 3.0, 2.9),
    JointLimit("wrist_flex", -1.65806, 1.65806, 3.0, 2.9),
    JointLimit("wrist_roll", -2.74385, 2.84121, 3.0, 2.9),
    JointLimit("gripper", -0.17453, 1.74533, 3.0, 2.9),
)
JOINT_NAMES: tuple[str, ...] = tuple(j.name for j in JOINTS)
ARM_JOINTS: tuple[str, ...] = JOINT_NAMES[:5]
GRIPPER_JOINT = "gripper"
#: ros2_control joint_trajectory_controllers -> the joints each commands (config/controllers.yaml,
#: the executor's and teleop's outputs and sim_arm's inputs all follow this map)
CONTROLLERS: dict[str, tuple[str, ...]] = {"arm_controller": ARM_JOINTS,
                                           "gripper_controller": (GRIPPER_JOINT,)}


def lower_limits() -> np.ndarray:
    return np.array([j.lower for j in JOINTS])


def upper_limits() -> np.ndarray:
    return np.array([j.upper for j in JOINTS])


def velocity_limits() -> np.ndarray:
    return np.array([j.max_velocity for j in JOINTS])


# --------------------------------------------------------------------------------------------
# Geometry: the kinematic chain, masses and simple shapes. description.py turns this into the
# URDF (ROS) and the MJCF (MuJoCo); forward_kinematics below is the numpy twin of both, so the
# planner, the simulator and ros2_control all see the same arm.
#
# Our own simplified SO-101 built from boxes and cylinders (no meshes), with link lengths close to
# the public SO-101 description. Frames: x forward (away from the base, towards the workspace),
# y left, z up, base_link on the table top. At q = 0 every joint frame is aligned with base_link
# and the arm forms an "L": upper arm straight up, forearm, wrist and gripper pointing forward
# (+x), the gripper's jaws side by side along y. Sign conventions (ours, not the servo
# calibration of a real arm): shoulder_pan positive turns left (about +z); shoulder_lift,
# elbow_flex and wrist_flex positive tip the arm forward / downwards (about +y); wrist_roll about
# the gripper's +x; gripper positive opens the moving jaw.
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Shape:
    """A primitive shared by URDF and MJCF: box (half extents x, y, z), cylinder (radius,
    half length, along its local z) or sphere (radius,), placed by xyz and URDF-style rpy."""

    kind: str
    size: tuple[float, ...]
    xyz: tuple[float, float, float] = (0.0, 0.0, 0.0)
    rpy: tuple[float, float, float] = (0.0, 0.0, 0.0)
    rgba: tuple[float, float, float, float] = (0.95, 0.55, 0.15, 1.0)

    def volume(self) -> float:
        if self.kind == "box":
            return 8.0 * self.size[0] * self.size[1] * self.size[2]
        if self.kind == "cylinder":
            return np.pi * self.size[0] ** 2 * 2.0 * self.size[1]
        return 4.0 / 3.0 * np.pi * self.size[0] ** 3

    def inertia(self, mass: float) -> np.ndarray:
        """Solid-body inertia (3, 3) about the shape's centre, in the shape's own frame."""
        if self.kind == "box":
            x, y, z = (2.0 * s for s in self.size)
            d = (y * y + z * z, x * x + z * z, x * x + y * y)
            return np.diag(d) * mass / 12.0
        if self.kind == "cylinder":
            r, h = self.size[0], 2.0 * self.size[1]
            side = mass * (3 * r * r + h * h) / 12.0
            return np.diag((side, side, mass * r * r / 2.0))
        return np.eye(3) * 0.4 * mass * self.size[0] ** 2


@dataclass(frozen=True)
class Link:
    """A rigid link: its mass spreads over its shapes at uniform density (see link_inertia)."""

    name: str
    mass: float  # kg
    shapes: tuple[Shape, ...]


@dataclass(frozen=True)
class JointFrame:
    """Where a joint sits: origin (xyz, rpy) in the parent link's frame, rotation axis in the
    joint's own frame (which is also the child link's frame)."""

    name: str
    parent: str
    child: str
    xyz: tuple[float, float, float]
    axis: tuple[float, float, float]
    rpy: tuple[float, float, float] = (0.0, 0.0, 0.0)


BASE_HEIGHT = 0.0624      # table top to the shoulder_pan joint
SHOULDER_OFFSET = (0.0304, 0.0, 0.0542)  # pan joint to shoulder_lift axis
UPPER_ARM = 0.1126        # shoulder_lift to elbow_flex
FOREARM = 0.1349          # elbow_flex to wrist_flex
WRIST = 0.0611            # wrist_flex to wrist_roll (the gripper's base)
TIP_XYZ = (0.0981, 0.0, 0.0)  # gripper tip (grasp centre between the jaws) in the gripper frame
JAW_PIVOT = (0.0500, -0.0150, 0.0)  # gripper joint in the gripper frame

_ORANGE = (0.95, 0.55, 0.15, 1.0)
_DARK = (0.15, 0.15, 0.17, 1.0)
_HALF_PI = np.pi / 2

BASE_LINK = "base_link"
TIP_LINK = "gripper_link"  # the link TIP_XYZ is attached to
LINKS: tuple[Link, ...] = (
    Link(BASE_LINK, 0.30, (
        Shape("cylinder", (0.045, BASE_HEIGHT / 2 - 0.002), (0.0, 0.0, BASE_HEIGHT / 2 - 0.002),
              rgba=_DARK),)),
    Link("shoulder_link", 0.10, (
        Shape("cylinder", (0.040, 0.012), (0.0, 0.0, 0.012)),
        Shape("box", (0.030, 0.028, 0.022), (0.015, 0.0, 0.032)),
        Shape("cylinder", (0.020, 0.028), SHOULDER_OFFSET, (_HALF_PI, 0.0, 0.0), _DARK),
    )),
    Link("upper_arm_link", 0.10, (
        Shape("box", (0.016, 0.020, UPPER_ARM / 2), (0.0, 0.0, UPPER_ARM / 2)),
        Shape("cylinder", (0.019, 0.024), (0.0, 0.0, UPPER_ARM), (_HALF_PI, 0.0, 0.0), _DARK),
    )),
    Link("lower_arm_link", 0.10, (
        Shape("box", (FOREARM / 2, 0.018, 0.015), (FOREARM / 2, 0.0, 0.0)),
        Shape("cylinder", (0.017, 0.022), (FOREARM, 0.0, 0.0), (_HALF_PI, 0.0, 0.0), _DARK),
    )),
    Link("wrist_link", 0.08, (
        Shape("box", (WRIST / 2, 0.017, 0.016), (WRIST / 2, 0.0, 0.0)),)),
    Link(TIP_LINK, 0.10, (
        Shape("box", (0.027, 0.024, 0.020), (0.027, -0.004, 0.0), rgba=_DARK),  # servo housing
        Shape("box", (0.0275, 0.004, 0.012), (0.0815, -0.019, 0.0)),  # fixed jaw
    )),
    Link("moving_jaw_link", 0.03, (
        Shape("box", (0.029, 0.004, 0.011), (0.029, 0.004, 0.0)),)),
)

JOINT_FRAMES: tuple[JointFrame, ...] = (
    JointFrame("shoulder_pan", BASE_LINK, "shoulder_link", (0.0, 0.0, BASE_HEIGHT), (0, 0, 1)),
    JointFrame("shoulder_lift", "shoulder_link", "upper_arm_link", SHOULDER_OFFSET, (0, 1, 0)),
    JointFrame("elbow_flex", "upper_arm_link", "lower_arm_link", (0.0, 0.0, UPPER_ARM), (0, 1, 0)),
    JointFrame("wrist_flex", "lower_arm_link", "wrist_link", (FOREARM, 0.0, 0.0), (0, 1, 0)),
    JointFrame("wrist_roll", "wrist_link", TIP_LINK, (WRIST, 0.0, 0.0), (1, 0, 0)),
    JointFrame("gripper", TIP_LINK, "moving_jaw_link", JAW_PIVOT, (0, 0, 1)),
)
assert tuple(j.name for j in JOINT_FRAMES) == JOINT_NAMES


def link(name: str) -> Link:
    return next(lk for lk in LINKS if lk.name == name)


def rpy_matrix(rpy) -> np.ndarray:
    """URDF convention: R = Rz(yaw) Ry(pitch) Rx(roll) (fixed axes x, then y, then z)."""
    r, p, y = rpy
    cr, sr, cp, sp, cy, sy = np.cos(r), np.sin(r), np.cos(p), np.sin(p), np.cos(y), np.sin(y)
    return np.array([[cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr],
                     [sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr],
                     [-sp, cp * sr, cp * cr]])


def rpy_quaternion(rpy) -> np.ndarray:
    """The same rotation as rpy_matrix, as a unit quaternion (w, x, y, z) for MJCF."""
    r, p, y = (a / 2 for a in rpy)
    cr, sr, cp, sp, cy, sy = np.cos(r), np.sin(r), np.cos(p), np.sin(p), np.cos(y), np.sin(y)
    return np.array([cr * cp * cy + sr * sp * sy, sr * cp * cy - cr * sp * sy,
                     cr * sp * cy + sr * cp * sy, cr * cp * sy - sr * sp * cy])


def link_inertia(lk: Link) -> tuple[np.ndarray, np.ndarray]:
    """(centre of mass (3,), inertia (3, 3) about it) in the link frame, from its shapes.

    Computed once here and written identically into URDF and MJCF, so both simulators and any
    dynamics code agree on the arm's mass distribution.
    """
    vols = np.array([s.volume() for s in lk.shapes])
    masses = lk.mass * vols / vols.sum()
    centres = np.array([s.xyz for s in lk.shapes], float)
    com = (masses[:, None] * centres).sum(0) / lk.mass
    inertia = np.zeros((3, 3))
    for s, m, c in zip(lk.shapes, masses, centres, strict=True):
        rot = rpy_matrix(s.rpy)
        d = c - com
        inertia += rot @ s.inertia(m) @ rot.T + m * (d @ d * np.eye(3) - np.outer(d, d))
    return com, inertia


def _axis_rotations(axis, angles: np.ndarray) -> np.ndarray:
    """Rotation matrices (..., 3, 3) about a unit axis (Rodrigues)."""
    k = np.asarray(axis, float) / np.linalg.norm(axis)
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    s, c = np.sin(angles)[..., None, None], np.cos(angles)[..., None, None]
    return np.eye(3) + s * kx + (1 - c) * (kx @ kx)


def joint_transforms(q: np.ndarray) -> np.ndarray:
    """Poses (..., 6, 4, 4) of the six child links (joint frames after rotation) in base_link.

    q: (..., 6) joint positions in JOINT_NAMES order.
    """
    q = np.asarray(q, float)
    if q.shape[-1] != len(JOINT_FRAMES):
        raise ValueError(f"q must end in {len(JOINT_FRAMES)} joints, got shape {q.shape}")
    batch = q.shape[:-1]
    poses = {BASE_LINK: np.broadcast_to(np.eye(4), batch + (4, 4))}
    out = np.empty(batch + (len(JOINT_FRAMES), 4, 4))
    for i, jf in enumerate(JOINT_FRAMES):
        origin = np.eye(4)
        origin[:3, :3], origin[:3, 3] = rpy_matrix(jf.rpy), jf.xyz
        motion = np.zeros(batch + (4, 4))
        motion[..., :3, :3] = _axis_rotations(jf.axis, q[..., i])
        motion[..., 3, 3] = 1.0
        pose = poses[jf.parent] @ origin @ motion
        poses[jf.child] = out[..., i, :, :] = pose
    return out


def tip_transform(q: np.ndarray) -> np.ndarray:
    """Pose (..., 4, 4) of the gripper tip in base_link; its x axis is the approach direction."""
    gripper_pose = joint_transforms(q)[..., JOINT_NAMES.index("wrist_roll"), :, :]
    offset = np.eye(4)
    offset[:3, 3] = TIP_XYZ
    return gripper_pose @ offset


def forward_kinematics(q: np.ndarray) -> np.ndarray:
    """Gripper tip position (..., 3) in base_link (metres) for joint positions q (..., 6).

    numpy only, batched: the planner draws whole chunks of end-effector paths with one call.
    Matches MuJoCo's `gripper_tip` site (test/test_sim.py checks it).
    """
    return tip_transform(q)[..., :3, 3]


@dataclass(frozen=True)
class Servo:
    """A Feetech STS3215 position servo as the simulator sees it: a stiff position loop
    (kp, N m/rad, critically damped in MuJoCo) behind a gearbox (armature = reflected rotor
    inertia, kg m^2) with some viscous damping (N m s/rad) and dry friction (N m). Effort is
    capped by the joint's max_effort. Written into URDF <dynamics> and MJCF alike."""

    kp: float = 100.0
    armature: float = 0.005
    damping: float = 0.05
    frictionloss: float = 0.01


SERVOS: dict[str, Servo] = {name: Servo() for name in ARM_JOINTS}
# The gripper squeezes with a softer loop: kp x (closing error) sets the grip torque, and a
# closed jaw should hold a cube, not crush the contact solver.
SERVOS[GRIPPER_JOINT] = Servo(kp=2.0, armature=0.002, damping=0.02, frictionloss=0.005)
