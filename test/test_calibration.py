"""An SO-101's LeRobot calibration -> the Feetech driver's parameters and LeRobot's units, checked
against tick/angle pairs worked out by hand from the driver's and LeRobot's formulas."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from genpol import calibration, robot

# A follower as lerobot-calibrate writes it (ranges in Present_Position ticks, after homing).
FOLLOWER_FILE = Path(__file__).parent / "data" / "so101_follower.json"
FOLLOWER = json.loads(FOLLOWER_FILE.read_text())
TICK = 2 * math.pi / 4096  # the driver's radians per tick


def write(tmp_path, data=FOLLOWER, name="follower.json"):
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def test_driver_params_map_known_ticks_to_known_angles(tmp_path):
    cal = calibration.load(write(tmp_path))
    params = cal.driver_joint_params()
    assert [params[j]["id"] for j in robot.JOINT_NAMES] == ["1", "2", "3", "4", "5", "6"]
    # arm joints: the middle of the calibrated range is 0 rad (LeRobot's 0 degrees)
    assert params["shoulder_pan"]["offset"] == "2047"  # (747 + 3347) / 2
    assert params["wrist_roll"]["offset"] == "2048"  # 4095 / 2 = 2047.5, rounded to even
    # gripper: range_min (closed) reads the lower limit, -10 deg = -113.78 ticks
    assert params["gripper"]["offset"] == str(2030 + 114)
    offsets = {j: int(p["offset"]) for j, p in params.items()}

    def driver_reads(joint, ticks):  # feetech_ros2_driver 0.2.2: (ticks - offset) * 2 pi / 4096
        return (ticks - offsets[joint]) * TICK

    assert driver_reads("shoulder_pan", 2047) == 0.0
    assert driver_reads("shoulder_pan", 2047 + 1024) == pytest.approx(math.pi / 2)
    assert driver_reads("elbow_flex", 2000 - 512) == pytest.approx(-math.pi / 4)
    assert driver_reads("gripper", 2030) == pytest.approx(robot.lower_limits()[5], abs=TICK)
    # the module's conversions are the driver's, both ways
    ticks = np.array([2047 + 1024, 2045, 2000 - 512, 3000, 100, 2030])
    q = cal.ticks_to_radians(ticks)
    by_hand = [driver_reads(j, t) for j, t in zip(robot.JOINT_NAMES, ticks, strict=True)]
    np.testing.assert_allclose(q, by_hand)
    np.testing.assert_array_equal(cal.radians_to_ticks(q), ticks)


def test_lerobot_range_values_are_the_calibrated_range(tmp_path):
    cal = calibration.load(write(tmp_path))
    m = FOLLOWER
    lows = cal.lerobot_to_ticks(np.array([-100, -100, -100, -100, -100, 0]))
    highs = cal.lerobot_to_ticks(np.array([100, 100, 100, 100, 100, 100]))
    np.testing.assert_allclose(lows, [m[j]["range_min"] for j in robot.JOINT_NAMES])
    np.testing.assert_allclose(highs, [m[j]["range_max"] for j in robot.JOINT_NAMES])
    # 0 on -100..100 is the middle of the range: 0 rad on the driver (to a tick's rounding)
    q = cal.lerobot_to_radians(np.array([0, 0, 0, 0, 0, 0]))
    np.testing.assert_allclose(q[:5], 0.0, atol=TICK)
    assert q[5] == pytest.approx(robot.lower_limits()[5], abs=TICK)
    # LeRobot's own normalisation of those ticks gives the values back
    values = np.array([[-37.5, 12.0, 99.0, -100.0, 3.0, 42.0]])
    np.testing.assert_allclose(cal.ticks_to_lerobot(cal.lerobot_to_ticks(values)), values)
    # degrees (use_degrees=True): 90 degrees is 4095 / 4 ticks from the middle
    ticks = cal.lerobot_to_ticks(np.array([90.0, 0, 0, 0, 0, 0]), mode="degrees")
    assert ticks[0] == pytest.approx(2047 + 4095 / 4)
    q = cal.lerobot_to_radians(np.array([90.0, -45.0, 0, 0, 0, 0]), mode="degrees")
    np.testing.assert_allclose(q[:2], [math.pi / 2, -math.pi / 4], atol=2 * TICK)


def test_drive_mode_inverts_range_values_and_the_driver_refuses_it(tmp_path):
    data = json.loads(json.dumps(FOLLOWER))
    data["elbow_flex"]["drive_mode"] = 1
    data["gripper"]["drive_mode"] = 1
    cal = calibration.load(write(tmp_path, data))
    ticks = cal.lerobot_to_ticks(np.array([0, 0, -100, 0, 0, 0.0]))
    assert ticks[2] == data["elbow_flex"]["range_max"]  # -100 is the top of the range
    assert ticks[5] == data["gripper"]["range_max"]  # gripper 0 -> 100 - 0
    np.testing.assert_allclose(cal.ticks_to_lerobot(ticks)[[2, 5]], [-100.0, 0.0])
    # degrees ignore drive_mode, as LeRobot does
    assert cal.lerobot_to_ticks(np.array([0, 0, 10.0, 0, 0, 0]), "degrees")[2] == \
        pytest.approx(2000 + 10 * 4095 / 360)
    with pytest.raises(calibration.CalibrationError, match=r"drive_mode 1 for \['elbow_flex', "
                                                           r"'gripper'\].*Recalibrate"):
        cal.driver_joint_params()


@pytest.mark.parametrize("edit, message", [
    (lambda d: d.pop("wrist_roll"), r"no calibration for \['wrist_roll'\].*lerobot-calibrate"),
    (lambda d: d["gripper"].update(range_min=3600), r"range \[3600, 3500\]"),
    (lambda d: d["gripper"].update(id=1), "share a bus id"),
    (lambda d: d["elbow_flex"].update(homing_offset="12"), "integer 'homing_offset'"),
    (lambda d: d["elbow_flex"].update(drive_mode=2), "drive_mode must be 0 or 1"),
])
def test_bad_calibration_files_are_refused_with_the_fix(tmp_path, edit, message):
    data = json.loads(json.dumps(FOLLOWER))
    edit(data)
    with pytest.raises(calibration.CalibrationError, match=message):
        calibration.load(write(tmp_path, data))


def test_missing_or_broken_file(tmp_path):
    with pytest.raises(calibration.CalibrationError, match="not found; calibrate the arm"):
        calibration.load(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(calibration.CalibrationError, match="not readable JSON"):
        calibration.load(bad)
