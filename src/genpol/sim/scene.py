"""The MuJoCo scene: the SO-101 (from description.py) on a table with a cube, an obstacle, a bin,
a target marker, a front camera and a wrist camera.

One scene serves every task: tasks.py decides where things go, and objects a task does not use
are parked under the table top, out of sight and out of reach. The obstacle, bin and target are
mocap bodies, so a reset moves them without rebuilding the model. Shadows and reflections are
off: software rendering on a small CPU budget matters more than looks.
"""

from __future__ import annotations


import numpy as np

from genpol.sim import gl
from genpol.sim.cameras import FRONT_AT, FRONT_EYE, FRONT_FOVY_DEG, lookat_xyaxes

gl.configure()
import mujoco  # noqa: E402  (after gl.configure: MuJoCo reads MUJOCO_GL at import)

from genpol import description  # noqa: E402
from genpol.sim.tasks import (  # noqa: E402  (object sizes live with the tasks that use them)
    BIN_INNER_HALF, BIN_WALL_HEIGHT, CUBE_HALF, OBSTACLE_HALF, PARKED)

TIMESTEP = 0.002          # s; 500 Hz physics
TABLE_HALF = (0.40, 0.40, 0.02)
TABLE_CENTRE = (0.15, 0.0)
CUBE_MASS = 0.02          # kg
BIN_WALL = 0.004          # bin wall half thickness
TARGET_RADIUS = 0.012

# Collision bits (see description.ARM_CONTYPE): world 1, "static obstacles" 2, arm 4.
# Obstacle and bin never touch the table (no wasted static-static contacts) but do touch the
# arm and the cube; the cube touches everything.
FRONT_CAMERA = "front"
WRIST_CAMERA = "wrist"
CAMERAS = (FRONT_CAMERA, WRIST_CAMERA)


def _v(values) -> str:
    return " ".join(f"{float(v):.6g}" for v in values)


def _bin_geoms() -> str:
    r, t, h = BIN_INNER_HALF, BIN_WALL, BIN_WALL_HEIGHT
    walls: list[tuple[tuple[float, ...], tuple[float, ...]]] = [
        ((0.0, 0.0, t), (r + 2 * t, r + 2 * t, t))]  # floor
    for sx, sy in ((1, 0), (-1, 0), (0, 1), (0, -1)):
        pos = (sx * (r + t), sy * (r + t), h / 2 + t)
        size = (t, r + 2 * t, h / 2) if sx else (r + 2 * t, t, h / 2)
        walls.append((pos, size))
    return "\n".join(f'      <geom name="bin_{i}" type="box" pos="{_v(p)}" size="{_v(s)}" '
                     f'contype="2" conaffinity="0" rgba="0.25 0.45 0.85 1"/>'
                     for i, (p, s) in enumerate(walls))


def scene_xml(timestep: float = TIMESTEP) -> str:
    """The scene's MJCF. Everything a task moves starts parked; tasks.py places it on reset."""
    if timestep > 0.002:
        raise ValueError("physics timestep must be <= 2 ms (>= 500 Hz)")
    # Wrist camera at the front of the gripper housing, above the jaws, looking along them
    # (gripper +x) tilted 25 degrees towards them; MuJoCo cameras look along -z with +y up.
    tilt = np.deg2rad(25.0)
    wrist_fwd = (np.cos(tilt), 0.0, -np.sin(tilt))
    wrist_xyaxes = lookat_xyaxes((0, 0, 0), wrist_fwd)
    wrist_cam = (f'<camera name="{WRIST_CAMERA}" pos="0.056 -0.004 0.026" '
                 f'xyaxes="{_v(wrist_xyaxes)}" fovy="75"/>')
    parts = description.mjcf_parts(extra={"gripper_link": wrist_cam})
    h = CUBE_HALF
    return f"""<mujoco model="so101_scene">
  <compiler angle="radian" autolimits="true"/>
  <option timestep="{timestep:.6g}" integrator="implicitfast" cone="elliptic" impratio="10"/>
  <statistic center="0.15 0 0.1" extent="0.8"/>
  <visual>
    <global offwidth="640" offheight="480"/>
    <headlight ambient="0.35 0.35 0.35" diffuse="0.45 0.45 0.45" specular="0 0 0"/>
    <quality shadowsize="0"/>
  </visual>
  <asset>
    <texture name="sky" type="skybox" builtin="gradient" rgb1="0.75 0.8 0.85" rgb2="0.35 0.37 0.4"
             width="32" height="32"/>
  </asset>
  <default>{parts.default}</default>
  <worldbody>
    <geom name="floor" type="plane" pos="0 0 -0.75" size="0 0 0.05" rgba="0.4 0.4 0.42 1"
          contype="0" conaffinity="0"/>
    <light name="sun" directional="true" pos="0.3 0.3 1.5" dir="-0.2 -0.2 -1"
           diffuse="0.6 0.6 0.6" castshadow="false"/>
    <geom name="table" type="box" pos="{_v(TABLE_CENTRE)} {-TABLE_HALF[2]}"
          size="{_v(TABLE_HALF)}" rgba="0.72 0.65 0.55 1" contype="1" conaffinity="1"/>
    <camera name="{FRONT_CAMERA}" pos="{_v(FRONT_EYE)}"
            xyaxes="{_v(lookat_xyaxes(FRONT_EYE, FRONT_AT))}" fovy="{FRONT_FOVY_DEG:g}"/>
{parts.body}
    <body name="cube" pos="{_v(PARKED + [0, 0, 0.05])}">
      <freejoint name="cube"/>
      <geom name="cube" type="box" size="{h} {h} {h}" mass="{CUBE_MASS}" rgba="0.85 0.15 0.15 1"
            contype="1" conaffinity="3" condim="4" friction="1.2 0.02 0.001" solref="0.004 1"/>
    </body>
    <body name="obstacle" mocap="true" pos="{_v(PARKED)}">
      <geom name="obstacle" type="box" pos="0 0 {OBSTACLE_HALF[2]}" size="{_v(OBSTACLE_HALF)}"
            contype="2" conaffinity="0" rgba="0.3 0.3 0.3 1"/>
    </body>
    <body name="bin" mocap="true" pos="{_v(PARKED)}">
{_bin_geoms()}
    </body>
    <body name="target" mocap="true" pos="{_v(PARKED)}">
      <geom name="target" type="sphere" size="{TARGET_RADIUS}" contype="0" conaffinity="0"
            rgba="0.1 0.8 0.2 0.9"/>
    </body>
  </worldbody>
  <actuator>
{parts.actuator}
  </actuator>
</mujoco>
"""


def load_model(timestep: float = TIMESTEP) -> mujoco.MjModel:
    return mujoco.MjModel.from_xml_string(scene_xml(timestep))
