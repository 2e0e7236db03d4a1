"""URDF and MJCF for the SO-101, generated from robot.py so that ROS and MuJoCo cannot disagree.

`urdf()` gives the robot_description (with a <ros2_control> block for controller_manager);
`mjcf_parts()` gives the arm's MJCF pieces that sim/scene.py places in its scene; `mjcf()` is the
arm alone as a complete MuJoCo model. `python -m genpol.description` rewrites config/so101.urdf
(committed so ROS tools can read it without running Python); a test checks the file is current.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

import numpy as np

from genpol import robot
from genpol.calibration import Calibration

DEFAULT_PLUGIN = "mock_components/GenericSystem"
#: The ros2_control driver SO-101 owners run for the Feetech STS3215 bus servos, in the version
#: the generated parameters target (calibration.DRIVER: 0.2.2, read from its source): hardware
#: param `usb_port`; per joint `id` (bus id) and `offset` (ticks read as 0 rad); nothing else.
FEETECH_PLUGIN = "feetech_ros2_driver/FeetechHardwareInterface"


def feetech_params(usb_port: str, cal: Calibration) -> tuple[dict[str, str],
                                                              dict[str, dict[str, str]]]:
    """(hardware params, per-joint params) for FEETECH_PLUGIN on `usb_port`, each joint's id and
    offset from the arm's calibration (genpol.calibration)."""
    return {"usb_port": usb_port}, cal.driver_joint_params()
URDF_PATH = Path(__file__).resolve().parents[2] / "config" / "so101.urdf"
TIP_SITE = "gripper_tip"


def _f(x: float) -> str:
    """Stable number text: 6 significant digits, no '-0', tiny values (rounding noise) as 0."""
    x = float(x)
    if abs(x) < 1e-12:
        return "0"
    return f"{x:.6g}"


def _v(values: Sequence[float] | np.ndarray) -> str:
    return " ".join(_f(v) for v in values)


# ------------------------------------------------------------------------------------- URDF


def _urdf_geometry(shape: robot.Shape) -> str:
    if shape.kind == "box":
        return f'<box size="{_v([2 * s for s in shape.size])}"/>'
    if shape.kind == "cylinder":
        return f'<cylinder radius="{_f(shape.size[0])}" length="{_f(2 * shape.size[1])}"/>'
    if shape.kind == "sphere":
        return f'<sphere radius="{_f(shape.size[0])}"/>'
    raise ValueError(f"unknown shape kind {shape.kind!r}")


def _material_names() -> dict[tuple[float, ...], str]:
    colours: dict[tuple[float, ...], str] = {}
    for lk in robot.LINKS:
        for s in lk.shapes:
            colours.setdefault(s.rgba, f"so101_colour_{len(colours)}")
    return colours


def _urdf_link(lk: robot.Link, materials: Mapping[tuple[float, ...], str]) -> list[str]:
    com, inertia = robot.link_inertia(lk)
    out = [f'  <link name="{lk.name}">',
           "    <inertial>",
           f'      <origin xyz="{_v(com)}" rpy="0 0 0"/>',
           f'      <mass value="{_f(lk.mass)}"/>',
           f'      <inertia ixx="{_f(inertia[0, 0])}" ixy="{_f(inertia[0, 1])}" '
           f'ixz="{_f(inertia[0, 2])}" iyy="{_f(inertia[1, 1])}" iyz="{_f(inertia[1, 2])}" '
           f'izz="{_f(inertia[2, 2])}"/>',
           "    </inertial>"]
    for s in lk.shapes:
        origin = f'<origin xyz="{_v(s.xyz)}" rpy="{_v(s.rpy)}"/>'
        geometry = f"<geometry>{_urdf_geometry(s)}</geometry>"
        out += [f"    <visual>{origin}{geometry}<material name=\"{materials[s.rgba]}\"/></visual>",
                f"    <collision>{origin}{geometry}</collision>"]
    out.append("  </link>")
    return out


def _urdf_joint(jf: robot.JointFrame, limit: robot.JointLimit) -> list[str]:
    servo = robot.SERVOS[jf.name]
    return [f'  <joint name="{jf.name}" type="revolute">',
            f'    <parent link="{jf.parent}"/>',
            f'    <child link="{jf.child}"/>',
            f'    <origin xyz="{_v(jf.xyz)}" rpy="{_v(jf.rpy)}"/>',
            f'    <axis xyz="{_v(jf.axis)}"/>',
            f'    <limit lower="{_f(limit.lower)}" upper="{_f(limit.upper)}" '
            f'effort="{_f(limit.max_effort)}" velocity="{_f(limit.max_velocity)}"/>',
            f'    <dynamics damping="{_f(servo.damping)}" friction="{_f(servo.frictionloss)}"/>',
            "  </joint>"]


def _ros2_control(name: str, plugin: str, params: Mapping[str, str],
                  initial: Sequence[float] | np.ndarray,
                  joint_params: Mapping[str, Mapping[str, str]] | None = None,
                  commands: bool = True) -> list[str]:
    out = [f'  <ros2_control name="{name}" type="system">',
           "    <hardware>",
           f"      <plugin>{escape(plugin)}</plugin>"]
    out += [f"      <param name={quoteattr(k)}>{escape(str(v))}</param>" for k, v in params.items()]
    out.append("    </hardware>")
    for limit, q0 in zip(robot.JOINTS, initial, strict=True):
        out.append(f'    <joint name="{limit.name}">')
        out += [f"      <param name={quoteattr(k)}>{escape(str(v))}</param>"
                for k, v in (joint_params or {}).get(limit.name, {}).items()]
        if commands:
            out += ['      <command_interface name="position">',
                    f'        <param name="min">{_f(limit.lower)}</param>',
                    f'        <param name="max">{_f(limit.upper)}</param>',
                    "      </command_interface>"]
        out += [
                '      <state_interface name="position">',
                f'        <param name="initial_value">{_f(q0)}</param>',
                "      </state_interface>",
                '      <state_interface name="velocity"/>',
                "    </joint>"]
    out.append("  </ros2_control>")
    return out


def urdf(hardware_plugin: str = DEFAULT_PLUGIN, hardware_params: Mapping[str, str] | None = None,
         initial_positions: Sequence[float] | None = None, name: str = "so101",
         joint_params: Mapping[str, Mapping[str, str]] | None = None,
         commands: bool = True) -> str:
    """The robot_description: links, the six revolute joints with limits, a fixed gripper_tip
    frame, and a <ros2_control> system using `hardware_plugin` (mock hardware by default).

    Every joint offers a position command interface (bounded by its limits) and position and
    velocity state interfaces, which is what joint_trajectory_controller and
    joint_state_broadcaster in config/controllers.yaml claim. commands=False: state interfaces
    only, for a leader arm (the Feetech driver turns the torque of such joints off).
    """
    initial = np.zeros(len(robot.JOINTS)) if initial_positions is None else initial_positions
    if len(initial) != len(robot.JOINTS):
        raise ValueError(f"initial_positions needs {len(robot.JOINTS)} values")
    materials = _material_names()
    lines = ['<?xml version="1.0"?>',
             "<!-- Generated from src/genpol/robot.py by `python -m genpol.description`; "
             "do not edit by hand. -->",
             f'<robot name="{name}">']
    lines += [f'  <material name="{m}"><color rgba="{_v(c)}"/></material>'
              for c, m in materials.items()]
    for lk in robot.LINKS:
        lines += _urdf_link(lk, materials)
    for jf, limit in zip(robot.JOINT_FRAMES, robot.JOINTS, strict=True):
        lines += _urdf_joint(jf, limit)
    lines += [f'  <link name="{TIP_SITE}"/>',
              f'  <joint name="{TIP_SITE}_joint" type="fixed">',
              f'    <parent link="{robot.TIP_LINK}"/>',
              f'    <child link="{TIP_SITE}"/>',
              f'    <origin xyz="{_v(robot.TIP_XYZ)}" rpy="0 0 0"/>',
              "  </joint>"]
    lines += _ros2_control(name, hardware_plugin, hardware_params or {}, initial, joint_params,
                           commands)
    lines.append("</robot>")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------- MJCF

# Collision bits: the arm (4) touches the world (1) and obstacles (2) but not itself, so the
# simplified shapes may overlap at the joints without fighting each other.
ARM_CONTYPE, ARM_CONAFFINITY = 4, 3


@dataclass(frozen=True)
class MjcfParts:
    """The arm's MJCF pieces: <default> children, the <body> tree for <worldbody>, and the
    <actuator> children. scene.py wraps them in its own model; mjcf() in a bare one."""

    default: str
    body: str
    actuator: str


def _mj_geom(name: str, shape: robot.Shape) -> str:
    size = {"box": shape.size, "cylinder": shape.size, "sphere": shape.size[:1]}[shape.kind]
    return (f'<geom name="{name}" class="so101" type="{shape.kind}" size="{_v(size)}" '
            f'pos="{_v(shape.xyz)}" quat="{_v(robot.rpy_quaternion(shape.rpy))}" '
            f'rgba="{_v(shape.rgba)}"/>')


def mjcf_parts(base_pos: Sequence[float] = (0.0, 0.0, 0.0),
               extra: Mapping[str, str] | None = None) -> MjcfParts:
    """The arm for a MuJoCo scene, base_link at base_pos. `extra` maps link names to XML placed
    inside that link's body (cameras, sites), e.g. scene.py's wrist camera on gripper_link.

    Joints carry the servo's armature, damping and friction; each joint gets a position
    actuator of the same name (critically damped, effort capped by the joint's max_effort).
    """
    extra = dict(extra or {})
    default = ('<default class="so101">'
               f'<geom contype="{ARM_CONTYPE}" conaffinity="{ARM_CONAFFINITY}" condim="4" '
               'friction="1.2 0.02 0.001" solref="0.004 1"/>'
               '<joint limited="true"/>'
               "</default>")
    children: dict[str, list[robot.JointFrame]] = {}
    for jf in robot.JOINT_FRAMES:
        children.setdefault(jf.parent, []).append(jf)
    limits = {j.name: j for j in robot.JOINTS}

    def body(link_name: str, jf: robot.JointFrame | None, indent: str) -> list[str]:
        lk = robot.link(link_name)
        com, inertia = robot.link_inertia(lk)
        if jf is None:
            pos, quat = base_pos, np.array([1.0, 0.0, 0.0, 0.0])
        else:
            pos, quat = jf.xyz, robot.rpy_quaternion(jf.rpy)
        full = (inertia[0, 0], inertia[1, 1], inertia[2, 2],
                inertia[0, 1], inertia[0, 2], inertia[1, 2])
        out = [f'{indent}<body name="{link_name}" pos="{_v(pos)}" quat="{_v(quat)}">',
               f'{indent}  <inertial pos="{_v(com)}" mass="{_f(lk.mass)}" '
               f'fullinertia="{_v(full)}"/>']
        if jf is not None:
            lim, servo = limits[jf.name], robot.SERVOS[jf.name]
            out.append(f'{indent}  <joint name="{jf.name}" class="so101" axis="{_v(jf.axis)}" '
                       f'range="{_f(lim.lower)} {_f(lim.upper)}" '
                       f'armature="{_f(servo.armature)}" damping="{_f(servo.damping)}" '
                       f'frictionloss="{_f(servo.frictionloss)}"/>')
        out += [f"{indent}  {_mj_geom(f'{link_name}_{i}', s)}" for i, s in enumerate(lk.shapes)]
        if link_name == robot.TIP_LINK:
            out.append(f'{indent}  <site name="{TIP_SITE}" pos="{_v(robot.TIP_XYZ)}" '
                       'size="0.004" group="5" rgba="1 0 0 1"/>')
        if link_name in extra:
            out.append(f"{indent}  {extra.pop(link_name)}")
        for child in children.get(link_name, []):
            out += body(child.child, child, indent + "  ")
        out.append(f"{indent}</body>")
        return out

    tree = "\n".join(body(robot.BASE_LINK, None, "    "))
    if extra:
        raise ValueError(f"extra names unknown links: {sorted(extra)}")
    actuators = "\n".join(
        f'    <position name="{j.name}" joint="{j.name}" kp="{_f(robot.SERVOS[j.name].kp)}" '
        f'dampratio="1" ctrlrange="{_f(j.lower)} {_f(j.upper)}" '
        f'forcerange="{_f(-j.max_effort)} {_f(j.max_effort)}"/>' for j in robot.JOINTS)
    return MjcfParts(default=default, body=tree, actuator=actuators)


def mjcf(timestep: float = 0.002) -> str:
    """The arm alone on a floor, as a complete MJCF model (for inspection and tests)."""
    parts = mjcf_parts()
    return f"""<mujoco model="so101">
  <compiler angle="radian" autolimits="true"/>
  <option timestep="{_f(timestep)}" integrator="implicitfast"/>
  <default>{parts.default}</default>
  <worldbody>
    <light pos="0 0 1.5" dir="0 0 -1" castshadow="false"/>
    <geom name="floor" type="plane" size="1 1 0.05" rgba="0.8 0.8 0.8 1"/>
{parts.body}
  </worldbody>
  <actuator>
{parts.actuator}
  </actuator>
</mujoco>
"""


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Write the SO-101 URDF generated from robot.py.")
    p.add_argument("--output", type=Path, default=URDF_PATH, help="default: %(default)s")
    p.add_argument("--plugin", default=DEFAULT_PLUGIN, help="ros2_control hardware plugin")
    p.add_argument("--mjcf", action="store_true", help="print the MJCF instead")
    args = p.parse_args(argv)
    if args.mjcf:
        print(mjcf(), end="")
        return 0
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(urdf(hardware_plugin=args.plugin))
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
