"""genpol.control: the chunk executor's merging, interpolation, refusals, speed limits and
holding; the choice among sampled chunks; teleop following."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

from genpol import robot
from genpol.control import ChunkExecutor, Command, ExecutorConfig
from genpol.control.ensemble import merge_weights
from genpol.control.interpolate import sample
from genpol.control.selection import ChunkSelector, typical
from genpol.control.timeline import Prefix
from genpol.control.teleop import follow_command

NAMES = list(robot.JOINT_NAMES)
J = len(NAMES)
FAST = [1000.0] * J  # rad/s: speed limiting out of the way for the merging tests


def executor(start=None, **kw) -> ChunkExecutor:
    ex = ChunkExecutor(ExecutorConfig(**kw))
    if start is not None:
        ex.set_measured(np.broadcast_to(np.asarray(start, dtype=float), (J,)), NAMES)
    return ex


def constant_chunk(ex, stamp, value, n=6, fps=10.0, names=NAMES):
    value = np.broadcast_to(np.asarray(value, dtype=float), (len(names),))
    return ex.add_chunk(stamp, names, np.arange(n) / fps, np.tile(value, (n, 1)))


# --- interpolation --------------------------------------------------------------------------


def test_10hz_chunk_on_50hz_grid_is_exact_for_a_ramp():
    slope = np.array([0.5, -0.3, 0.2, 0.1, -0.7, 0.4])
    offset = np.array([0.1, 0.2, -0.3, 0.0, 0.5, 0.3])
    t = np.arange(10) / 10.0
    stamp, now = 3.0, 3.15
    ex = executor(start=offset + slope * (now - stamp), max_velocity=FAST, lookahead_points=5)
    assert ex.add_chunk(stamp, NAMES, t, offset + slope * t[:, None]).accepted
    cmd = ex.tick(now)
    assert cmd.source == "chunk" and cmd.positions.shape == (5, J)
    np.testing.assert_allclose(cmd.times, [0.02, 0.04, 0.06, 0.08, 0.10])
    expected = offset + slope * (now - stamp + cmd.times)[:, None]
    np.testing.assert_allclose(cmd.positions, expected, atol=1e-12)


def test_sample_reports_coverage_and_hits_the_chunk_points():
    times = np.array([1.0, 1.1, 1.2])
    pos = np.array([[0.0], [1.0], [4.0]])
    values, covered = sample(times, pos, np.array([0.98, 1.0, 1.05, 1.1, 1.15, 1.2, 1.22]))
    assert covered.tolist() == [False, True, True, True, True, True, False]
    np.testing.assert_allclose(values[1:6, 0], [0.0, 0.5, 1.0, 2.5, 4.0])


def test_bspline_starts_and_ends_on_the_chunk_and_keeps_a_ramp_exact():
    times = 2.0 + np.arange(6) / 10.0
    rng = np.random.default_rng(0)
    pos = rng.normal(size=(6, 2))
    values, covered = sample(times, pos, np.array([2.0, 2.5]), "bspline")
    np.testing.assert_allclose(values, pos[[0, -1]], atol=1e-12)
    query = np.linspace(2.0, 2.5, 26)
    def ramp(at):
        return np.array([0.3, -0.1]) + np.array([2.0, -1.0]) * (at - 2.0)[:, None]

    np.testing.assert_allclose(sample(times, ramp(times), query, "bspline")[0], ramp(query),
                               atol=1e-12)
    with pytest.raises(ValueError, match="interpolation"):
        sample(times, pos, query, "cubic")


def _span_jerk(points: np.ndarray, h: float) -> float:
    """The largest jerk of the uniform cubic B-spline on these points (phantom ends included)."""
    p = np.concatenate([2 * points[:1] - points[1:2], points, 2 * points[-1:] - points[-2:-1]])
    return float(np.abs(-p[:-3] + 3 * p[1:-2] - 3 * p[2:-1] + p[3:]).max() / h**3)


@pytest.mark.parametrize("interpolation", ["bspline", "linear"])
def test_a_continuation_chunk_takes_over_without_a_jerk_spike(interpolation):
    """A chunk that repeats the playing one's points around its takeover point (the committed
    prefix) takes over with the acceleration unchanged: the commanded jerk stays within what
    the two chunks' own spans ask. Linear interpolation turns the velocity at every point."""
    fps, dt = 10.0, 0.02
    t = np.arange(16) / fps
    a = np.stack([0.3 * np.sin(2.0 * t + j) for j in range(J)], axis=1)
    b = a[3:].copy()  # stamp 0.3, on A's grid: B's point k is A's point k + 3
    # lands at 0.33: takes over at B's point 1 (0.4); points 0..2 committed, then it bends away
    b[3:] += 0.05 * np.arange(1, len(b) - 2)[:, None] ** 2 * np.linspace(-1, 1, J)
    ex = executor(start=a[0], max_velocity=FAST, mode="continue", interpolation=interpolation,
                  state_timeout_s=0.0, divergence_tolerance_rad=0.0)
    assert ex.add_chunk(0.0, NAMES, t, a, now=0.0).accepted
    commanded = []
    for k in range(40):
        now = 0.1 + k * dt
        if abs(now - 0.34) < 1e-9:
            assert ex.add_chunk(0.3, NAMES, t[:len(b)], b, now=0.33).accepted
        commanded.append(ex.tick(now).positions[0])
    jerk = np.abs(np.diff(np.array(commanded), n=3, axis=0)).max() / dt**3
    bound = max(_span_jerk(a, 1 / fps), _span_jerk(b, 1 / fps))
    if interpolation == "bspline":
        assert jerk <= bound * (1 + 1e-6)
    else:
        assert jerk > 3 * bound  # what the B-spline removes


# --- merging --------------------------------------------------------------------------------

A = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
B = np.array([-0.2, 0.0, 0.4, -0.4, 1.0, 0.2])
C = np.array([0.5, -0.5, 0.0, 0.2, -1.0, 1.0])


def test_ensemble_two_chunks_matches_hand_computation():
    m = 0.5
    ex = executor(start=0.0, max_velocity=FAST, mode="ensemble", ensemble_m=m)
    constant_chunk(ex, 0.0, A)
    constant_chunk(ex, 0.1, B)
    cmd = ex.tick(0.2)
    w = np.array([1.0, math.exp(-m)])  # i = 0 is the oldest chunk
    np.testing.assert_allclose(cmd.positions, np.tile((w[0] * A + w[1] * B) / w.sum(), (5, 1)))


def _three_chunks(ex):
    """A ends at 0.3 s, so at 0.32 s only B and C cover: there B becomes i = 0."""
    assert constant_chunk(ex, 0.0, A, n=4).accepted
    assert constant_chunk(ex, 0.2, C).accepted  # arrives before B: order is by stamp
    assert constant_chunk(ex, 0.1, B).accepted
    return ex.tick(0.22)  # outputs at 0.24 .. 0.32


def test_ensemble_three_chunks_matches_hand_computation():
    m = 0.7
    cmd = _three_chunks(executor(start=0.0, max_velocity=FAST, mode="ensemble", ensemble_m=m))
    e1, e2 = math.exp(-m), math.exp(-2 * m)
    all_three = (A + e1 * B + e2 * C) / (1 + e1 + e2)
    b_and_c = (B + e1 * C) / (1 + e1)
    np.testing.assert_allclose(cmd.positions[:4], np.tile(all_three, (4, 1)), atol=1e-12)
    np.testing.assert_allclose(cmd.positions[4], b_and_c, atol=1e-12)


def test_ensemble_with_m_zero_is_the_average():
    ens = _three_chunks(executor(start=0.0, max_velocity=FAST, mode="ensemble",
                                 ensemble_m=0.0))
    avg = _three_chunks(executor(start=0.0, max_velocity=FAST, mode="average"))
    np.testing.assert_allclose(ens.positions, avg.positions, atol=1e-12)
    np.testing.assert_allclose(avg.positions[0], (A + B + C) / 3, atol=1e-12)
    np.testing.assert_allclose(avg.positions[4], (B + C) / 2, atol=1e-12)


def test_latest_uses_the_newest_chunk_by_stamp():
    cmd = _three_chunks(executor(start=0.0, max_velocity=FAST, mode="latest"))
    np.testing.assert_allclose(cmd.positions, np.tile(C, (5, 1)))


def test_merge_weights_are_normalised_and_zero_where_nothing_covers():
    covered = np.array([[1, 1, 0], [0, 1, 0], [1, 1, 0]], dtype=bool)
    w = merge_weights(covered, "ensemble", 1.0)
    np.testing.assert_allclose(w[:, :2].sum(axis=0), 1.0)
    np.testing.assert_allclose(w[:, 0], np.array([1, 0, math.exp(-1)]) / (1 + math.exp(-1)))
    assert not w[:, 2].any()


def test_joints_are_matched_by_name():
    ex = executor(start=0.0, max_velocity=FAST)
    order = [3, 0, 5, 1, 4, 2]
    result = constant_chunk(ex, 0.0, A[order], names=[NAMES[i] for i in order])
    assert result.accepted and not result.warnings
    np.testing.assert_allclose(ex.tick(0.0).positions[0], A)


# --- refusals -------------------------------------------------------------------------------

T = np.arange(5) / 10.0
P = np.zeros((5, J))


def _with(i, j, value):
    p = P.copy()
    p[i, j] = value
    return p


@pytest.mark.parametrize("names, times, positions, words", [
    (NAMES[:5] + ["jaw"], T, P, ["unknown", "jaw"]),
    (NAMES + ["jaw"], T, np.zeros((5, J + 1)), ["unknown", "jaw"]),
    (NAMES[:5], T, P[:, :5], ["missing", "gripper"]),
    (NAMES, T, _with(2, 2, np.nan), ["NaN/inf in point 2, joint elbow_flex"]),
    (NAMES, T, _with(4, 0, -np.inf), ["NaN/inf in point 4, joint shoulder_pan"]),
    (NAMES, np.array([0.0, 0.1, 0.1, 0.2, 0.3]), P, ["strictly increasing", "point 2"]),
    (NAMES, np.array([0.0, 0.2, 0.1, 0.3, 0.4]), P, ["strictly increasing"]),
    (NAMES, np.zeros(0), np.zeros((0, J)), ["at least one point"]),
    (NAMES, T, np.zeros((4, J)), ["shape"]),
])
def test_bad_chunks_are_refused_and_change_nothing(names, times, positions, words):
    ex = executor(start=0.3, max_velocity=FAST)
    before = ex.tick(0.0)
    result = ex.add_chunk(0.0, names, times, positions)
    assert not result.accepted
    assert result.reason.startswith("dropped")
    for w in words:
        assert w in result.reason
    assert ex.num_chunks == 0
    after = ex.tick(0.02)
    assert after.source == "hold"
    np.testing.assert_array_equal(after.positions, before.positions)


def test_stale_chunks_are_refused():
    ex = executor(start=0.0, max_chunk_age_s=1.0)
    assert constant_chunk(ex, 10.0, 0.0).accepted
    result = constant_chunk(ex, 8.9, 0.0)  # no tick yet: judged against the newest chunk
    assert not result.accepted and "stale" in result.reason
    ex.tick(12.0)
    result = constant_chunk(ex, 10.9, 0.0)  # 1.1 s older than the last tick
    assert not result.accepted and "stale" in result.reason
    assert constant_chunk(ex, 11.5, 0.0).accepted


def test_reset_starts_a_new_episode_without_a_jump_back():
    ex = executor(start=0.0, max_velocity=FAST, mode="latest")
    assert constant_chunk(ex, 1.0, 0.3).accepted
    assert ex.tick(1.0).positions[0, 0] == pytest.approx(0.3)
    ex.reset(2.0)  # the arm was moved elsewhere for the next episode
    assert ex.tick(2.02).positions.shape[0] == 0  # nothing measured since: publish nothing
    result = constant_chunk(ex, 1.9, 0.3)  # planned for the old episode, arrived late
    assert not result.accepted and "before the last reset" in result.reason
    ex.set_measured(np.full(J, -0.2), NAMES)
    cmd = ex.tick(2.04)
    assert cmd.source == "hold" and np.allclose(cmd.positions, -0.2)  # not 0.3: no jump back
    assert constant_chunk(ex, 2.05, 0.1).accepted


def test_out_of_limit_positions_are_clamped_with_a_warning():
    upper = robot.upper_limits()[0]
    ex = executor(start=[1.9, 0, 0, 0, 0, 0], max_velocity=FAST, mode="average")
    result = constant_chunk(ex, 0.0, [2.5, 0, 0, 0, 0, 0])
    assert result.accepted
    assert len(result.warnings) == 1
    assert "shoulder_pan" in result.warnings[0] and "2.5" in result.warnings[0]
    cmd = ex.tick(0.0)
    np.testing.assert_allclose(cmd.positions[:, 0], upper)
    # clamped when it arrives, not only on the way out: it merges as `upper`, not as 2.5
    constant_chunk(ex, 0.0, [1.5, 0, 0, 0, 0, 0])
    np.testing.assert_allclose(ex.tick(0.02).positions[:, 0], (upper + 1.5) / 2)


def test_measured_state_beyond_a_limit_comes_back_at_the_speed_limit():
    lower = robot.lower_limits()[5]
    start = np.array([0, 0, 0, 0, 0, lower - 0.1])  # gripper calibrated slightly past its limit
    ex = executor(start=start, velocity_scale=0.5)
    constant_chunk(ex, 0.0, np.zeros(J))
    cmd = ex.tick(0.0)
    step = 3.0 * 0.5 / 50.0
    np.testing.assert_allclose(cmd.positions[:, 5], start[5] + step * np.arange(1, 6))
    assert any("outside the joint limits" in w for w in cmd.warnings)


def test_a_chunk_stamped_far_in_the_future_is_refused():
    """It would play seconds from now, from a clock that disagrees with ours."""
    ex = executor(start=np.zeros(J))
    ex.tick(10.0)
    result = constant_chunk(ex, 15.0, np.full(J, 0.1))
    assert not result.accepted and "in the future" in result.reason
    assert constant_chunk(ex, 10.2, np.full(J, 0.1)).accepted  # a little ahead is fine


def test_a_first_state_far_outside_the_limits_commands_nothing_until_a_reset():
    """A half-turn calibration error reads about pi off: nothing may be commanded, not even a
    hold, and the reason names the joint and the calibration."""
    start = np.zeros(J)
    start[2] = robot.upper_limits()[2] + 3.0  # elbow_flex, about a half turn off
    ex = executor(start=start)
    constant_chunk(ex, 0.0, np.zeros(J))
    for now in (0.0, 0.02, 0.04):
        cmd = ex.tick(now)
        assert cmd.source == "fault" and len(cmd.positions) == 0
    assert "elbow_flex reads" in ex.fault and "calibration:=" in ex.fault
    assert "shoulder_pan" not in ex.fault
    # a later in-limit reading does not clear it on its own: the operator resets
    ex.set_measured(np.zeros(J), NAMES)
    assert ex.tick(0.06).source == "fault"
    ex.reset(0.08)
    ex.set_measured(np.zeros(J), NAMES)
    constant_chunk(ex, 0.1, np.full(J, 0.01))
    cmd = ex.tick(0.1)
    assert cmd.source == "chunk" and ex.fault is None and len(cmd.positions) == 5


def test_start_margin_is_configurable_and_checked():
    start = np.zeros(J)
    start[0] = robot.lower_limits()[0] - 0.3
    assert executor(start=start).tick(0.0).source == "fault"  # default margin 0.2
    assert executor(start=start, start_margin_rad=0.5).tick(0.0).source == "hold"
    with pytest.raises(ValueError, match="start_margin_rad must be >= 0"):
        ExecutorConfig(start_margin_rad=-1.0)


# --- speed limit ----------------------------------------------------------------------------


def test_speed_limit_scales_the_whole_step_and_keeps_direction():
    max_velocity = [3.0, 3.0, 1.0, 3.0, 3.0, 3.0]
    ex = executor(start=0.0, max_velocity=max_velocity, velocity_scale=0.3)
    target = np.array([0.5, -0.25, 0.3, 0.1, 0.0, 0.0])
    constant_chunk(ex, 0.0, target)
    max_step = np.array(max_velocity) * 0.3 / 50.0
    prev = np.zeros(J)
    for now in (0.0, 0.02):
        cmd = ex.tick(now)
        assert sum("speed limited" in w for w in cmd.warnings) == 1
        steps = np.diff(np.vstack([prev, cmd.positions]), axis=0)
        assert np.all(np.abs(steps) <= max_step + 1e-12)
        for step in steps:
            np.testing.assert_allclose(step / np.linalg.norm(step),
                                       target / np.linalg.norm(target), atol=1e-12)
            # the binding joint moves at exactly its limit: elbow_flex (0.3 at 1 rad/s)
            assert np.max(np.abs(step) / max_step) == pytest.approx(1.0)
        prev = cmd.positions[0]  # the next tick starts from the last commanded point


def test_no_speed_warning_when_within_limits():
    ex = executor(start=A, velocity_scale=0.3)
    constant_chunk(ex, 0.0, A)
    cmd = ex.tick(0.0)
    assert cmd.source == "chunk" and cmd.warnings == []


# --- holding --------------------------------------------------------------------------------


def test_holds_last_commanded_when_chunks_expire():
    ex = executor(start=0.0, max_velocity=FAST)
    t = np.arange(6) / 10.0
    ex.add_chunk(0.0, NAMES, t, np.outer(t, A))  # ramp, ends at 0.5 s
    cmd = ex.tick(0.42)  # outputs 0.44 .. 0.52; past 0.5 the chunk's last value is held
    np.testing.assert_allclose(cmd.positions[:3], np.outer([0.44, 0.46, 0.48], A), atol=1e-12)
    np.testing.assert_allclose(cmd.positions[3:], np.outer([0.5, 0.5], A), atol=1e-12)
    last = None
    for now in np.arange(0.44, 0.7, 0.02):
        cmd = ex.tick(now)
        if cmd.source == "hold":
            np.testing.assert_array_equal(cmd.positions, np.tile(last, (5, 1)))
        else:
            last = cmd.positions[0]
    assert cmd.source == "hold" and ex.num_chunks == 0
    np.testing.assert_allclose(last, 0.5 * A, atol=1e-12)  # ended where the chunk ended


def test_holds_measured_state_before_any_chunk():
    ex = executor()
    empty = ex.tick(0.0)
    assert empty.source == "hold" and empty.positions.shape == (0, J)
    ex.set_measured([0.1, 0.2], ["gripper", "shoulder_pan"])  # partial: still unknown
    assert ex.tick(0.02).positions.shape == (0, J)
    order = [5, 4, 3, 2, 1, 0]
    ex.set_measured(np.append(A[order], 9.0), [NAMES[i] for i in order] + ["other_robot_joint"])
    cmd = ex.tick(0.04)
    assert cmd.source == "hold"
    np.testing.assert_array_equal(cmd.positions, np.tile(A, (5, 1)))
    np.testing.assert_allclose(cmd.times, np.arange(1, 6) / 50.0)


def test_chunk_before_joint_states_publishes_nothing():
    ex = executor()
    constant_chunk(ex, 0.0, A)
    cmd = ex.tick(0.0)
    assert cmd.positions.shape == (0, J) and "joint_states" in cmd.warnings[0]


def test_clock_going_back_drops_chunks():
    ex = executor(start=0.0)
    constant_chunk(ex, 5.0, 0.0)
    ex.tick(5.0)
    cmd = ex.tick(1.0)
    assert cmd.source == "hold" and ex.num_chunks == 0 and "clock" in cmd.warnings[0]


# --- configuration --------------------------------------------------------------------------


@pytest.mark.parametrize("kw, field", [
    (dict(mode="newest"), "mode"),
    (dict(ensemble_m=-0.1), "ensemble_m"),
    (dict(rate_hz=0.0), "rate_hz"),
    (dict(max_chunk_age_s=0.0), "max_chunk_age_s"),
    (dict(lookahead_points=0), "lookahead_points"),
    (dict(velocity_scale=0.0), "velocity_scale"),
    (dict(lower=[0.0] * 3), "lower"),
    (dict(upper=[-3.0] * J), "lower must be < upper"),
    (dict(max_velocity=[0.0] * J), "max_velocity"),
    (dict(joint_names=["a", "b"]), "robot.py does not know"),
    (dict(joint_names=["gripper", "gripper"]), "more than once"),
])
def test_bad_config_is_refused_with_the_field_named(kw, field):
    with pytest.raises(ValueError, match=field):
        ExecutorConfig(**kw)


def test_config_fills_limits_from_robot_and_accepts_other_joints_with_limits():
    cfg = ExecutorConfig(joint_names=["gripper", "shoulder_pan"])
    assert cfg.lower == [robot.JOINTS[5].lower, robot.JOINTS[0].lower]
    assert cfg.max_velocity == [robot.JOINTS[5].max_velocity, robot.JOINTS[0].max_velocity]
    other = ExecutorConfig(joint_names=["a"], lower=[-1], upper=[1], max_velocity=[2])
    assert other.upper == [1.0]


# --- a whole run ----------------------------------------------------------------------------


def test_scenario_chunks_every_100ms_ticks_at_50hz_stay_continuous():
    rng = np.random.default_rng(0)
    amp = np.array([0.3, 0.2, 0.25, 0.2, 0.3, 0.4])
    mid = np.array([0.0, 0.0, 0.0, 0.0, 0.0, 0.6])  # inside every joint's limits

    def plan(t):  # what the policy "wants": 0.5 Hz sines, peak speed <= 1.3 rad/s
        return mid + amp * np.sin(2 * np.pi * 0.5 * np.asarray(t)[..., None])

    cfg = dict(velocity_scale=0.5, lookahead_points=5)
    ex = executor(**cfg)
    ex.set_measured(plan(0.0) + 0.2, NAMES)  # the arm starts 0.2 rad off the plan
    max_step = robot.velocity_limits() * 0.5 / 50.0
    latency, fps, horizon = 0.05, 10.0, 16
    pending = []  # chunks the planner has computed, each delivered `latency` after its stamp
    prev = ex.measured
    sources = []
    for tick in range(100):
        now = tick / 50.0
        if tick % 5 == 0:  # a new observation every 0.1 s
            t = np.arange(horizon) / fps
            noise = rng.normal(0.0, 0.01, size=J)  # chunks disagree a little
            pending.append((now, t, plan(now + t) + noise))
        for chunk in [c for c in pending if c[0] + latency <= now + 1e-9]:
            assert ex.add_chunk(chunk[0], NAMES, chunk[1], chunk[2]).accepted
            pending.remove(chunk)
        cmd: Command = ex.tick(now)
        sources.append(cmd.source)
        assert cmd.positions.shape == (5, J)
        steps = np.diff(np.vstack([prev, cmd.positions]), axis=0)
        assert np.all(np.abs(steps) <= max_step + 1e-9), f"jump at t={now}"
        assert np.all(cmd.positions >= robot.lower_limits())
        assert np.all(cmd.positions <= robot.upper_limits())
        ex.set_measured(prev, NAMES)  # the arm follows a tick behind (never far: no re-anchoring)
        prev = cmd.positions[0]
        if now >= 1.0:  # caught up with the plan despite the offset start
            np.testing.assert_allclose(cmd.positions[0], plan(now + 0.02), atol=0.03)
    assert sources[:3] == ["hold"] * 3  # nothing arrived before 0.05 s
    assert set(sources[3:]) == {"chunk"}
    assert ex.num_chunks <= 11  # old chunks are dropped (1 s of them at most)
    assert ex.reanchored == 0


# --- chunk selection ----------------------------------------------------------------------


def test_selector_keeps_the_committed_mode():
    selector = ChunkSelector("consistent")
    t = np.arange(10) / 10.0
    left = np.stack([t, t], axis=1)[None]    # one mode rises, the other falls
    right = -left
    first = selector.select(np.concatenate([right, left]), 0.0, 10.0, key="p")
    assert first == 0  # nothing to be consistent with: sample 0
    for k in range(1, 5):  # the committed ("right") mode is picked wherever it is listed
        stamp = k * 0.1
        shifted = np.stack([t + stamp, t + stamp], axis=1)[None]
        order = [shifted, -shifted] if k % 2 else [-shifted, shifted]
        assert selector.select(np.concatenate(order), stamp, 10.0, key="p") == (1 if k % 2 else 0)
    # Another policy's chunks are not compared: sample 0 again.
    assert selector.select(np.concatenate([left, right]), 0.5, 10.0, key="q") == 0
    assert ChunkSelector("first").select(np.concatenate([right, left]), 0.0, 10.0) == 0
    with pytest.raises(ValueError, match="selection must be one of"):
        ChunkSelector("best")


def test_first_chunk_comes_from_inside_a_mode_not_between_modes():
    rng = np.random.default_rng(0)
    t = np.arange(10) / 10.0
    mode = np.stack([t, t], axis=1)
    between = np.zeros((1, 10, 2))              # the average of the two modes
    left = mode + 0.02 * rng.standard_normal((8, 10, 2))
    right = -mode + 0.02 * rng.standard_normal((8, 10, 2))
    chunks = np.concatenate([between, left, right])
    index = ChunkSelector("consistent").select(chunks, 0.0, 10.0, key="p")
    assert index != 0
    assert np.abs(chunks[index] - (mode if index <= 8 else -mode)).max() < 0.1
    # After a policy change there is no commitment to keep: a fresh draw inside a mode again.
    selector = ChunkSelector("consistent")
    selector.select(chunks, 0.0, 10.0, key="p")
    assert selector.select(chunks, 0.1, 10.0, key="q") != 0


def test_first_chunk_keeps_the_policys_mode_proportions():
    """A 3:1 policy must go the minority way about a quarter of the time, not never: picking
    the densest sample would always take the larger mode."""
    rng = np.random.default_rng(1)
    t = np.arange(10) / 10.0
    mode = np.stack([t, t], axis=1)
    picks = []
    for _ in range(400):
        signs = np.where(rng.random(32) < 0.75, 1.0, -1.0)
        chunks = signs[:, None, None] * mode + 0.03 * rng.standard_normal((32, 10, 2))
        chunks[rng.integers(32)] = 0.0  # one sample between the modes
        index = typical(chunks)
        assert np.abs(chunks[index]).max() > 0.5  # never the one between the modes
        picks.append(signs[index])
    minority = np.mean(np.array(picks) < 0)
    assert 0.17 < minority < 0.33, minority


def test_pick_continues_the_prefix_into_the_chosen_chunk_or_sends_nothing_if_it_departs():
    """The choice is made on the samples as drawn; a chosen sample that took the other mode is
    not faded into (that would drive between the modes): nothing is sent, nothing remembered."""
    t = np.arange(10) / 10.0
    up = np.stack([t, t], axis=1)
    prefix = Prefix(up.copy(), committed=2, overlap=6)
    near = up + 0.02                                         # follows the playing chunk
    selector = ChunkSelector("consistent")
    selector.chosen(up, 0.0, 10.0, key="p")
    chunks, departure = selector.pick(np.stack([-up, near]), 0.0, 10.0, "p", prefix, 0.1)
    assert chunks is not None and departure == pytest.approx(0.02)
    np.testing.assert_allclose(chunks[0, :2], up[:2])        # committed steps exactly
    np.testing.assert_allclose(chunks[0, 6:], near[6:])      # the sample after the overlap
    np.testing.assert_allclose(chunks[1, :2], up[:2])        # the others continue it too
    # every sample the other way: not sent, and the selector still keeps to `up`
    sent, departure = selector.pick(np.stack([-up, -up - 0.01]), 0.0, 10.0, "p", prefix, 0.1)
    assert sent is None and departure > 0.2
    assert selector.select(np.stack([-up, up]), 0.0, 10.0, "p") == 1
    # without a prefix: the chosen sample first, as drawn
    chunks, departure = ChunkSelector("first").pick(np.stack([-up, up]), 0.0, 10.0)
    np.testing.assert_allclose(chunks[0], -up)
    assert departure == 0.0


# --- teleop following -----------------------------------------------------------------------


def test_follow_command_matches_by_name_clamps_and_stretches_time():
    names = list(reversed(NAMES))
    pose = {"shoulder_pan": 0.2, "shoulder_lift": -0.3, "elbow_flex": 0.4, "wrist_flex": 0.1,
            "wrist_roll": 9.0, "gripper": 0.5}  # wrist_roll beyond its limit
    commands, duration, problems = follow_command(names, [pose[n] for n in names], {}, 0.05)
    assert problems == [] and duration == 0.05  # nothing commanded before: no velocity limit
    assert list(commands) == list(robot.CONTROLLERS)
    np.testing.assert_allclose(commands["arm_controller"],
                               [0.2, -0.3, 0.4, 0.1, robot.upper_limits()[4]])
    np.testing.assert_allclose(commands["gripper_controller"], [0.5])
    last = {"shoulder_pan": 1.3}  # 1.5 rad away: longer than lead_time_s at the joint's limit
    _, duration, _ = follow_command(names, [pose[n] for n in names], last, 0.05)
    assert duration == pytest.approx(1.1 / robot.velocity_limits()[0])


def test_follow_command_leaves_out_a_controller_it_cannot_trust():
    values = dict(zip(NAMES, [0.1] * J, strict=True))
    values["gripper"] = math.nan
    del values["elbow_flex"]
    commands, _, problems = follow_command(list(values), list(values.values()), {}, 0.05)
    assert commands == {}
    assert problems == ["arm_controller: joints ['elbow_flex'] missing",
                        "gripper_controller: non-finite positions [nan]"]


def test_control_imports_neither_torch_nor_rclpy():
    code = ("import sys, genpol.control, genpol.control.selection, genpol.control.teleop; "
            "print([m for m in ('torch', 'rclpy') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
