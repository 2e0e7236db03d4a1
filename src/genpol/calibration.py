"""An SO-101's calibration: LeRobot's calibration JSON <-> servo ticks <-> genpol's joint angles.

LeRobot's `lerobot-calibrate` writes one JSON per arm (a follower's under
~/.cache/huggingface/lerobot/calibration/robots/so101_follower/<id>.json; .../so_follower/ from
LeRobot 0.4.3, a leader's under .../teleoperators/): per motor name its bus `id`, `drive_mode`
(1: LeRobot negates the joint's -100..100 value; 0 on the SO-101), `homing_offset` (already
written into the servo, so Present_Position reads about 2047 in the pose the arm was calibrated
in) and `range_min`/`range_max` (the ticks the joint reached). LeRobot's own values are relative
to that range: -100..100 for the arm joints (the default up to LeRobot 0.4.3) or degrees about
the middle of the range (`use_degrees=True`, the default from 0.4.4), and 0..100 for the gripper.

genpol's joint angles on a real arm are what the ros2_control driver reports. The generated
<ros2_control> block targets feetech_ros2_driver 0.2.2 (tag 0.2.2, commit e424839; the Jazzy
binary ros-jazzy-feetech-ros2-driver), whose joints read q = (ticks - offset) * 2 pi / 4096 with
a per-joint `offset` in ticks and no direction parameter. `driver_joint_params` sets each arm
joint's offset to the middle of its calibrated range, so 0 rad is LeRobot's 0 degrees, and the
gripper's so that its range_min (closed) reads genpol's lower gripper limit. Every conversion
here goes through ticks with that same rule, so a LeRobot dataset converted with an arm's
calibration is in the units the driver reports on that arm.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from genpol import robot

TICKS_PER_TURN = 4096  # STS3215: 12-bit position, one turn
#: LeRobot's degrees: (ticks - middle) * 360 / 4095 (its "max resolution")
LEROBOT_MAX_RES = 4095
#: homing_offset is a sign-magnitude register with 11 bits of magnitude
MAX_HOMING_OFFSET = 2047
#: units of LeRobot's values: "range" (arm -100..100, gripper 0..100) or "degrees"
LEROBOT_MODES = ("range", "degrees")
#: where `lerobot-calibrate` puts a follower's file (a leader's: .../teleoperators/so101_leader/)
LEROBOT_CALIBRATION_DIR = "~/.cache/huggingface/lerobot/calibration/robots/so101_follower"
DRIVER = "feetech_ros2_driver 0.2.2 (github.com/JafarAbdi/feetech_ros2_driver, tag 0.2.2)"
HOW_TO_CALIBRATE = ("calibrate the arm with LeRobot (lerobot-calibrate --robot.type=so101_follower "
                    "--robot.port=/dev/ttyACM0 --robot.id=my_arm) and pass the JSON it writes, "
                    f"e.g. {LEROBOT_CALIBRATION_DIR}/my_arm.json")


class CalibrationError(ValueError):
    """A calibration file that cannot be used; the message names the file and the fix."""


@dataclass(frozen=True)
class MotorCalibration:
    id: int
    drive_mode: int
    homing_offset: int
    range_min: int
    range_max: int

    @property
    def middle(self) -> float:
        return (self.range_min + self.range_max) / 2.0


@dataclass(frozen=True)
class Calibration:
    """One arm's calibration, motors by genpol joint name (LeRobot's SO-101 names are ours)."""

    motors: Mapping[str, MotorCalibration]
    source: str = ""

    def _column(self, name: str) -> MotorCalibration:
        return self.motors[name]

    def offsets(self) -> np.ndarray:
        """The driver's per-joint offset in ticks, JOINT_NAMES order."""
        out = []
        for name, limit in zip(robot.JOINT_NAMES, robot.JOINTS, strict=True):
            m = self.motors[name]
            if name == robot.GRIPPER_JOINT:  # range_min reads the lower limit
                out.append(m.range_min - round(limit.lower * TICKS_PER_TURN / (2 * math.pi)))
            else:
                out.append(round(m.middle))
        return np.array(out, dtype=np.int64)

    # ---- ticks <-> radians, as the driver converts them --------------------------------------
    def ticks_to_radians(self, ticks: np.ndarray) -> np.ndarray:
        """(..., 6) Present_Position ticks -> the driver's joint angles (radians)."""
        t = np.asarray(ticks, dtype=np.float64)
        return (t - self.offsets()) * (2 * math.pi / TICKS_PER_TURN)

    def radians_to_ticks(self, q: np.ndarray) -> np.ndarray:
        """(..., 6) joint angles -> the goal ticks the driver sends (it truncates toward 0)."""
        raw = np.asarray(q, dtype=np.float64) * (TICKS_PER_TURN / (2 * math.pi))
        return np.trunc(raw).astype(np.int64) + self.offsets()

    # ---- LeRobot's values <-> ticks ----------------------------------------------------------
    def lerobot_to_ticks(self, values: np.ndarray, mode: str = "range") -> np.ndarray:
        """(..., 6) LeRobot values (JOINT_NAMES order) -> ticks: LeRobot's normalisation
        inverted for this arm. Range values are clamped to -100..100 (gripper 0..100) and
        drive_mode negates them first; degrees ignore drive_mode, as LeRobot does."""
        v = np.asarray(values, dtype=np.float64)
        out = np.empty_like(v)
        for i, name in enumerate(robot.JOINT_NAMES):
            m, x = self.motors[name], v[..., i]
            span = m.range_max - m.range_min
            if name == robot.GRIPPER_JOINT:  # always 0..100
                frac = np.clip(100.0 - x if m.drive_mode else x, 0.0, 100.0) / 100.0
                out[..., i] = m.range_min + frac * span
            elif mode == "range":  # -100..100
                frac = (np.clip(-x if m.drive_mode else x, -100.0, 100.0) + 100.0) / 200.0
                out[..., i] = m.range_min + frac * span
            else:
                out[..., i] = m.middle + x * LEROBOT_MAX_RES / 360.0
        return out

    def ticks_to_lerobot(self, ticks: np.ndarray, mode: str = "range") -> np.ndarray:
        """LeRobot's normalisation of Present_Position ticks (the inverse of lerobot_to_ticks
        within the calibrated range)."""
        t = np.asarray(ticks, dtype=np.float64)
        out = np.empty_like(t)
        for i, name in enumerate(robot.JOINT_NAMES):
            m, x = self.motors[name], t[..., i]
            frac = (np.clip(x, m.range_min, m.range_max) - m.range_min) \
                / (m.range_max - m.range_min)
            if name == robot.GRIPPER_JOINT:
                out[..., i] = 100.0 - frac * 100.0 if m.drive_mode else frac * 100.0
            elif mode == "range":
                value = frac * 200.0 - 100.0
                out[..., i] = -value if m.drive_mode else value
            else:
                out[..., i] = (x - m.middle) * 360.0 / LEROBOT_MAX_RES
        return out

    def lerobot_to_radians(self, values: np.ndarray, mode: str = "range") -> np.ndarray:
        """LeRobot values recorded on this arm -> the angles the driver reports on it."""
        if mode not in LEROBOT_MODES:
            raise ValueError(f"mode must be one of {LEROBOT_MODES}, got {mode!r}")
        return self.ticks_to_radians(self.lerobot_to_ticks(values, mode))

    def radians_to_lerobot(self, q: np.ndarray, mode: str = "range") -> np.ndarray:
        q = np.asarray(q, dtype=np.float64)
        ticks = q * (TICKS_PER_TURN / (2 * math.pi)) + self.offsets()
        return self.ticks_to_lerobot(ticks, mode)

    # ---- the driver's parameters -------------------------------------------------------------
    def driver_joint_params(self) -> dict[str, dict[str, str]]:
        """Per-joint <param>s of the generated <ros2_control> block (for DRIVER): the servo's
        bus id and the offset in ticks. A joint LeRobot inverts (drive_mode 1) is refused: the
        driver cannot invert one, and its angle would run against genpol's (and the URDF's)."""
        inverted = [n for n in robot.JOINT_NAMES if self.motors[n].drive_mode]
        if inverted:
            raise CalibrationError(
                f"{self.source or 'calibration'}: drive_mode 1 for {inverted}; {DRIVER} has no "
                "direction parameter, so these joints would move against genpol's convention. "
                "Recalibrate them with drive_mode 0 (LeRobot's SO-101 default)")
        return {name: {"id": str(self.motors[name].id), "offset": str(int(off))}
                for name, off in zip(robot.JOINT_NAMES, self.offsets(), strict=True)}


def _int(path: str, motor: str, key: str, entry: Mapping) -> int:
    value = entry.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) \
            or not float(value).is_integer():
        raise CalibrationError(f"{path}: motor {motor!r} needs an integer {key!r}, got "
                               f"{value!r}; {HOW_TO_CALIBRATE}")
    return int(value)


def parse(data: object, source: str = "calibration") -> Calibration:
    """A Calibration from LeRobot's JSON structure, every field checked."""
    if not isinstance(data, Mapping):
        raise CalibrationError(f"{source}: expected a JSON object of motors (LeRobot's "
                               f"calibration format), got {type(data).__name__}")
    missing = [n for n in robot.JOINT_NAMES if n not in data]
    if missing:
        raise CalibrationError(f"{source}: no calibration for {missing} (it has "
                               f"{sorted(map(str, data))}); an SO-101 calibration names "
                               f"{list(robot.JOINT_NAMES)}. {HOW_TO_CALIBRATE}")
    motors = {}
    for name in robot.JOINT_NAMES:
        entry = data[name]
        if not isinstance(entry, Mapping):
            raise CalibrationError(f"{source}: motor {name!r} is not an object")
        m = MotorCalibration(**{k: _int(source, name, k, entry) for k in (
            "id", "drive_mode", "homing_offset", "range_min", "range_max")})
        if not 0 <= m.id <= 253:
            raise CalibrationError(f"{source}: motor {name!r} has bus id {m.id}; Feetech ids "
                                   "are 0..253")
        if m.drive_mode not in (0, 1):
            raise CalibrationError(f"{source}: motor {name!r} drive_mode must be 0 or 1, got "
                                   f"{m.drive_mode}")
        if abs(m.homing_offset) > MAX_HOMING_OFFSET:
            raise CalibrationError(f"{source}: motor {name!r} homing_offset {m.homing_offset} "
                                   f"is beyond +-{MAX_HOMING_OFFSET} ticks")
        if not 0 <= m.range_min < m.range_max <= TICKS_PER_TURN - 1:
            raise CalibrationError(
                f"{source}: motor {name!r} range [{m.range_min}, {m.range_max}] must satisfy "
                f"0 <= range_min < range_max <= {TICKS_PER_TURN - 1}; move each joint through "
                "its whole range while lerobot-calibrate records it")
        motors[name] = m
    ids = [m.id for m in motors.values()]
    if len(set(ids)) != len(ids):
        raise CalibrationError(f"{source}: two motors share a bus id ({ids})")
    return Calibration(motors, source)


def load(path: str | Path) -> Calibration:
    """Read and check LeRobot's calibration JSON for an SO-101 (follower or leader)."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise CalibrationError(f"calibration file {p} not found; {HOW_TO_CALIBRATE}")
    try:
        data = json.loads(p.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CalibrationError(f"calibration file {p} is not readable JSON ({exc})") from None
    return parse(data, str(p))
