"""Executor settings, checked once at start-up so a bad parameter fails loudly, not mid-motion."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from genpol import robot
from genpol.control.interpolate import INTERPOLATIONS

MODES = ("ensemble", "latest", "average", "continue")


@dataclass
class ExecutorConfig:
    """How chunks are merged and how fast the published command may move.

    lower / upper / max_velocity default to robot.py's values for joint_names; the filled-in
    values are written back, so the node can log what it actually enforces.
    """

    rate_hz: float = 50.0
    #: "continue": the newest chunk from its takeover point on (genpol.control.timeline), the
    #: merge for real-time-chunked continuation chunks
    mode: str = "continue"  # "continue" | "ensemble" | "latest" | "average"
    ensemble_m: float = 0.01  # ACT temporal ensembling: w_i = exp(-m * i), i = 0 the oldest chunk
    max_chunk_age_s: float = 1.0  # chunks whose stamp is older than this are dropped
    lookahead_points: int = 5  # points published per tick, spaced 1 / rate_hz apart
    #: how a chunk is played between its points (genpol.control.interpolate): "bspline" keeps
    #: the acceleration continuous, at the seams of continuation chunks too; "linear" passes
    #: through every point
    interpolation: str = "bspline"
    joint_names: list[str] = field(default_factory=lambda: list(robot.JOINT_NAMES))
    lower: list[float] | None = None  # rad
    upper: list[float] | None = None  # rad
    max_velocity: list[float] | None = None  # rad/s
    velocity_scale: float = 1.0  # fraction of max_velocity allowed; start low (e.g. 0.3)
    #: how far outside its limits the first measured position (after start or a reset) may be;
    #: beyond it nothing is commanded: that is a calibration or wiring fault, not a pose
    start_margin_rad: float = 0.2
    #: chunks with more points are refused whole: converting one costs time the tick needs
    max_chunk_points: int = 1000
    #: a measured arm joint further than this from every command of the last tracking_window_s
    #: for divergence_ticks ticks running means the arm is not where the command is (a restarted
    #: driver, a collision, a hand): the executor re-anchors at the measured state. 0: off
    divergence_tolerance_rad: float = 0.3
    divergence_ticks: int = 2
    #: how far back commands count: the measured state trails the command by the controller's
    #: tracking lag and the state's own delay (in simulation on a busy 2-core machine, with
    #: states at 33 instead of 100 Hz, 0.2 s windows still saw the arm "leave" 4 times in 40 s)
    tracking_window_s: float = 0.5
    #: /joint_states silent for longer than this: the arm's driver stopped (killed, restarted,
    #: USB unplugged), so command nothing rather than keep sending the last command to whatever
    #: comes back; on the first state after the gap, re-anchor there if the arm is elsewhere.
    #: 0: off
    state_timeout_s: float = 0.5

    def __post_init__(self) -> None:
        self.validate()

    @property
    def dt(self) -> float:
        return 1.0 / self.rate_hz

    def validate(self) -> None:
        if not (_finite(self.rate_hz) and self.rate_hz > 0):
            raise ValueError(
                f"rate_hz must be a number > 0, got {self.rate_hz!r}; e.g. rate_hz: 50.0")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {', '.join(INTERPOLATIONS)}, got "
                             f"{self.interpolation!r}")
        if not (_finite(self.ensemble_m) and self.ensemble_m >= 0):
            raise ValueError(
                f"ensemble_m must be >= 0 (0 = plain average), got {self.ensemble_m!r}; e.g. 0.01")
        if not (_finite(self.max_chunk_age_s) and self.max_chunk_age_s > 0):
            raise ValueError(
                f"max_chunk_age_s must be > 0 seconds, got {self.max_chunk_age_s!r}; e.g. 1.0")
        if isinstance(self.lookahead_points, bool) or not isinstance(self.lookahead_points, int) \
                or self.lookahead_points < 1:
            raise ValueError(
                f"lookahead_points must be an integer >= 1, got {self.lookahead_points!r}; e.g. 5")
        if not (_finite(self.velocity_scale) and 0 < self.velocity_scale <= 1):
            raise ValueError(
                f"velocity_scale must be in (0, 1], got {self.velocity_scale!r}; start with 0.3 "
                "(to allow more than robot.py's limits, set max_velocity explicitly)")

        if not (_finite(self.start_margin_rad) and self.start_margin_rad >= 0):
            raise ValueError(f"start_margin_rad must be >= 0, got {self.start_margin_rad!r}; "
                             "e.g. 0.2")

        for name in ("max_chunk_points", "divergence_ticks"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if not (_finite(self.divergence_tolerance_rad) and self.divergence_tolerance_rad >= 0):
            raise ValueError("divergence_tolerance_rad must be >= 0 (0: off), got "
                             f"{self.divergence_tolerance_rad!r}; e.g. 0.3")
        if not (_finite(self.tracking_window_s) and self.tracking_window_s >= 0):
            raise ValueError(f"tracking_window_s must be >= 0 seconds, got "
                             f"{self.tracking_window_s!r}; e.g. 0.5")

        if not (_finite(self.state_timeout_s) and self.state_timeout_s >= 0):
            raise ValueError(f"state_timeout_s must be >= 0 seconds (0: off), got "
                             f"{self.state_timeout_s!r}; e.g. 0.5")

        self.joint_names = [str(n) for n in self.joint_names]
        if not self.joint_names:
            raise ValueError("joint_names is empty; list the joints to command, e.g. "
                             f"{list(robot.JOINT_NAMES)}")
        dupes = sorted({n for n in self.joint_names if self.joint_names.count(n) > 1})
        if dupes:
            raise ValueError(f"joint_names lists {dupes} more than once; name each joint once")

        known = {j.name: j for j in robot.JOINTS}
        filled: dict[str, list[float]] = {}
        for name in ("lower", "upper", "max_velocity"):
            values = getattr(self, name)
            if values is None:
                unknown = [n for n in self.joint_names if n not in known]
                if unknown:
                    raise ValueError(
                        f"{name} not given and robot.py does not know joints {unknown}; "
                        f"give {name} explicitly (one value per joint_names entry) or use "
                        f"joint names from {list(robot.JOINT_NAMES)}")
                values = [getattr(known[n], name) for n in self.joint_names]
            values = [float(v) for v in values]
            if len(values) != len(self.joint_names):
                raise ValueError(
                    f"{name} has {len(values)} values but joint_names has "
                    f"{len(self.joint_names)}; give one value per joint, in joint_names order")
            bad = [n for n, v in zip(self.joint_names, values, strict=True) if not _finite(v)]
            if bad:
                raise ValueError(f"{name} is NaN/inf for joints {bad}; give finite values")
            setattr(self, name, values)
            filled[name] = values

        bad = [n for n, lo, hi in zip(self.joint_names, filled["lower"], filled["upper"],
                                      strict=True) if not lo < hi]
        if bad:
            raise ValueError(f"lower must be < upper for every joint; not so for {bad}")
        bad = [n for n, v in zip(self.joint_names, filled["max_velocity"], strict=True)
               if not v > 0]
        if bad:
            raise ValueError(f"max_velocity must be > 0 rad/s for every joint; not so for {bad}")


def _finite(x: object) -> bool:
    try:
        return math.isfinite(float(x))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
