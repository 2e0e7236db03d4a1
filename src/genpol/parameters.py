"""Every node's parameters, defined once: name, default, description, and what values are allowed.

Plain data (no rclpy): genpol.nodes.params declares a table with rclpy ParameterDescriptors, so
`genpol param describe` (or `ros2 param describe`) documents each parameter and rclpy itself
refuses a read-only or out-of-range value; config/<node>.yaml holds the same names and defaults
(a test keeps them equal) and stays the file users edit and launch passes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from genpol import robot, topics
from genpol.control.config import MODES as EXECUTOR_MODES
from genpol.control.interpolate import INTERPOLATIONS
from genpol.control.selection import SELECTIONS
from genpol.control.timeline import CHUNKINGS, DEFAULT_INPAINT, INPAINTS, SCHEDULES
from genpol.sim import tasks


@dataclass(frozen=True)
class Param:
    name: str
    default: Any  # bool, int, float, str or a list of str or float; it sets the type
    description: str
    #: True: read once at start-up (rclpy refuses a later set); False: may change at run time
    read_only: bool = True
    #: inclusive (low, high), as rclpy's IntegerRange / FloatingPointRange
    range: tuple[float, float] | None = None
    #: allowed values of a string (or of each element of a string list)
    choices: tuple[str, ...] = ()
    #: any type accepted (`source:=0` and `source:=/dev/video0` both work)
    dynamic_typing: bool = False
    #: False: set at run time only (the recorder's episode outcome), so not in config/<node>.yaml
    in_file: bool = True

    def check(self, value: Any) -> str:
        """Empty if `value` is allowed, else the reason, naming the parameter."""
        if self.choices:
            many = isinstance(value, (list, tuple))
            bad = [v for v in (value if many else [value]) if v not in self.choices]
            if bad:
                return (f"{self.name} must be one of {list(self.choices)}, got "
                        f"{bad if many else repr(value)}")
        if self.range and isinstance(value, (int, float)) and not isinstance(value, bool):
            low, high = self.range
            if not low <= value <= high:
                return f"{self.name} must be in [{low:g}, {high:g}], got {value!r}"
        return ""


def controller_topic_param(controller: str) -> str:
    """arm_controller -> arm_topic: the parameter naming a controller's command topic."""
    return controller.removesuffix("_controller") + "_topic"


def _controller_topics() -> list[Param]:
    return [Param(controller_topic_param(c), topics.controller_command(c),
                  f"JointTrajectory topic of {c} (joints {', '.join(joints)})")
            for c, joints in robot.CONTROLLERS.items()]


SEED_RANGE = (0, 2**31 - 1)
SIM_CAMERAS = ("front", "wrist")  # genpol.sim.scene.CAMERAS, without importing MuJoCo

EXECUTOR: tuple[Param, ...] = (
    Param("rate_hz", 50.0, "ticks per second; each publishes lookahead_points points 1/rate_hz "
                           "apart", range=(1.0, 1000.0)),
    Param("mode", "continue", "merging of the chunks that cover now: ensemble (ACT temporal "
                              "ensembling), latest (newest chunk), average, continue (newest "
                              "chunk from its first point after arrival + 1 tick: for "
                              "real-time chunking)",
          choices=EXECUTOR_MODES),
    Param("ensemble_m", 0.01, "ensemble weight exp(-m * i), i = 0 the oldest chunk (0: plain "
                              "average)", range=(0.0, 100.0)),
    Param("max_chunk_age_s", 1.0, "chunks stamped longer ago than this are dropped",
          range=(0.01, 60.0)),
    Param("lookahead_points", 5, "points per published trajectory", range=(1, 100)),
    Param("interpolation", "bspline", "between a chunk's points: bspline (cubic B-spline through "
                                      "its ends, continuous acceleration, smooth seams) | linear "
                                      "(through every point)",
          choices=INTERPOLATIONS, read_only=True),
    Param("velocity_scale", 1.0, "fraction of robot.py's joint velocity limits allowed; start low "
                                 "on a real arm (e.g. 0.3)", range=(0.01, 1.0)),
    Param("start_margin_rad", 0.2, "the first measured position (after start or ~/reset) may be "
                                   "this far outside the joint limits; beyond it nothing is "
                                   "commanded (a calibration fault)", range=(0.0, 3.2),
          read_only=True),
    Param("max_chunk_points", 1000, "chunks with more points are dropped unread (their "
                                    "conversion would cost the tick its time)",
          range=(1, 100000)),
    Param("divergence_tolerance_rad", 0.3, "an arm joint measured further than this from every "
                                           "command of the last tracking_window_s for 2 ticks: "
                                           "re-anchor at the measured state and drop the "
                                           "chunks planned before (0: off)", range=(0.0, 3.2)),
    Param("tracking_window_s", 0.5, "how far back commands count for divergence_tolerance_rad: "
                                    "the measured state trails the command by the controller's "
                                    "lag and the state's delay", range=(0.0, 5.0)),
    Param("state_timeout_s", 0.5, "joint states silent this long: command nothing (the arm's "
                                  "driver stopped); on the first state after, re-anchor there if "
                                  "the arm moved (0: off)", range=(0.0, 60.0)),
    Param("tick_source", "thread", "thread: own thread at absolute deadlines; timer: an rclpy "
                                   "wall timer (always the timer with use_sim_time)",
          choices=("thread", "timer")),
    Param("tick_priority", 50, "SCHED_FIFO priority of the tick thread (0: normal); needs "
                               "CAP_SYS_NICE or an rtprio limit, else a warning and normal",
          range=(0, 99)),
    Param("tick_spin_s", 0.0005, "wake this early and busy-wait the rest (0: plain sleep); at "
                                 "most half a tick", range=(0.0, 0.5)),
    Param("spin_priority", 40, "SCHED_FIFO priority of the threads that run the subscriptions "
                               "(0: normal), below tick_priority: a busy CPU must not stop a "
                               "thread that holds the interpreter lock the tick needs",
          range=(0, 99)),
    Param("chunk_topic", topics.ACTION_CHUNK, "action chunks in (JointTrajectory)"),
    Param("state_topic", topics.JOINT_STATES, "measured joint states in"),
    *_controller_topics(),
    Param("path_topic", topics.EXECUTED_PATH, "the commanded end-effector path, for RViz"),
    Param("path_seconds", 3.0, "length of that path", range=(0.0, 60.0)),
    Param("frame_id", robot.BASE_LINK, "frame of the path marker"),
)

PLANNER: tuple[Param, ...] = (
    Param("policy_path", "", "checkpoint directory; empty: wait until one is set. Setting it "
                             "swaps the policy once it is vetted (refused: the old one runs on)",
          read_only=False),
    Param("device", "auto", "torch device; auto: cuda when present, else cpu"),
    Param("cpu_threads", 1, "torch threads on cpu (0: torch's default, one per core)",
          range=(0, 1024)),
    Param("precision", "float32", "sampling precision; bfloat16: matmuls and convolutions under "
                                  "bf16 autocast (for CUDA; chunks stay float32)",
          choices=("float32", "bfloat16")),
    Param("compile", False, "torch.compile the policy's nets at every load (CUDA only; a load "
                            "then takes longer)"),
    Param("num_samples", 8, "chunks sampled per observation (all drawn as markers)",
          read_only=False, range=(1, 1024)),
    Param("fresh_num_samples", 32, "chunks sampled, at least, for one that chooses the mode "
                                   "afresh (an episode's first, after a push or a gap)",
          read_only=False, range=(0, 1024)),
    Param("inference_rate_hz", 10.0, "observations planned per second (0: as fast as possible)",
          read_only=False, range=(0.0, 1000.0)),
    Param("max_observation_age_s", 0.5, "older joint states are not planned on",
          read_only=False, range=(0.0, 60.0)),
    Param("state_topic", topics.JOINT_STATES, "joint states in"),
    Param("camera_topics", [f"front={topics.CAMERA_IMAGE}",
                            f"wrist={topics.WRIST_CAMERA_IMAGE}"],
          "camera=topic pairs; a policy's cameras are looked up by name"),
    Param("chunk_topic", topics.ACTION_CHUNK, "action chunks out (JointTrajectory stamped with "
                                              "the observation's time)"),
    Param("marker_topic", topics.CHUNK_MARKERS, "the sampled chunks' paths, for RViz"),
    Param("frame_id", robot.BASE_LINK, "frame of the markers"),
    Param("selection", "consistent", "consistent: the sample nearest the previous chunk (keeps "
                                     "a mode), else a fair draw inside a mode; first: sample 0",
          read_only=False, choices=SELECTIONS),
    Param("sampling_steps", 0, "denoising steps per sample for flow and diffusion while a chunk "
                               "plays (0: the checkpoint's); fewer sample faster. A chunk that "
                               "chooses the mode afresh (the first of an episode) takes the "
                               "checkpoint's", read_only=False,
          range=(0, 1000)),
    Param("chunking", "rtc", "rtc: each chunk continues what the executor still plays of the "
                             "last one (flow, diffusion: real-time chunking guidance; binned: "
                             "forced prefix; other families: selection only); select: sample "
                             "freely, then `selection` picks", read_only=False, choices=CHUNKINGS),
    Param("rtc_schedule", "exp", "real-time chunking's weight over the overlap after the "
                                 "committed steps: exp (the paper's), linear, hard (none)",
          read_only=False, choices=SCHEDULES),
    Param("rtc_max_guidance", 0.0, "real-time chunking's guidance weight clip (beta; the "
                                   "paper's 5 steers through a backward pass per step, about "
                                   "2.6x a step's time); 0: inpainting the prefix only, the "
                                   "faster and on a 2-core CPU the better measured",
          read_only=False, range=(0.0, 1000.0)),
    Param("rtc_inpaint", DEFAULT_INPAINT,
          "real-time chunking: what the guided sampler writes into its denoised estimate at "
          "every step: committed (the committed steps) or overlap (the overlap too, blended by "
          "the soft-mask weights)",
          read_only=False, choices=INPAINTS),
    Param("rtc_max_departure_rad", 0.1, "real-time chunking: a chunk whose best sample leaves "
                                        "the playing one by more (soft-mask weighted, any "
                                        "joint) is not sent, and the playing one goes on",
          read_only=False, range=(0.0, 10.0)),
    Param("executor_rate_hz", 50.0, "the executor's tick rate, for the timeline contract (a "
                                    "chunk takes over one tick after it lands)",
          range=(1.0, 1000.0)),
    Param("added_delay_s", 0.0, "extra wait before each chunk is published: benchmarks inject "
                                "inference delay with it", read_only=False, range=(0.0, 10.0)),
)

SIM_ARM: tuple[Param, ...] = (
    Param("task", tasks.REACH_AROUND, "simulated task", choices=tasks.TASKS),
    Param("seed", 0, "seed of the first start pose (each ~/reset draws the next)",
          range=SEED_RANGE),
    Param("scene_seed", -1, ">= 0: one object layout for all episodes; -1: one per episode",
          range=(-1, SEED_RANGE[1])),
    Param("scene_spread", 1.0, "reach_around: how far the layouts range sideways (1: a few cm; "
                               "3: 20 cm, only a policy that sees the scene reaches the target)",
          range=(0.0, tasks.SPREAD_MAX)),
    Param("episodes_per_start", 1, "consecutive episodes (resets) that share a start pose",
          range=(1, 1000)),
    Param("joint_state_rate_hz", 100.0, "joint states (and physics steps) per second",
          range=(1.0, 1000.0)),
    Param("camera_rate_hz", 10.0, "camera frames per second (0: none)", range=(0.0, 120.0)),
    Param("camera_width", 96, "rendered frame width (pixels)", range=(8, 4096)),
    Param("camera_height", 96, "rendered frame height (pixels)", range=(8, 4096)),
    Param("cameras", list(SIM_CAMERAS), "scene cameras to render", choices=SIM_CAMERAS),
    Param("reset_guard_s", 0.5, "after ~/reset, ignore commands planned before it (first point "
                                "reset_guard_rad from the new start) for up to this long",
          range=(0.0, 10.0)),
    Param("reset_guard_rad", 0.15, "see reset_guard_s", range=(0.0, 6.3)),
    Param("push_offset_rad", [0.15, 0.0, -0.1, 0.0, 0.0, 0.0],
          "~/push displaces the joints by this (6 values, robot.JOINT_NAMES order); the default "
          "moves the tip ~3.5-5 cm left and up mid reach_around"),
)

CAMERA: tuple[Param, ...] = (
    Param("source", "0", "device index, /dev/videoN or a video file", dynamic_typing=True),
    Param("width", 640, "frame width (frames are resized to it)", range=(1, 8192)),
    Param("height", 480, "frame height", range=(1, 8192)),
    Param("fps", 30.0, "frames per second", range=(0.1, 1000.0), dynamic_typing=True),
    Param("loop_video", True, "a video file starts again at its end"),
    Param("frame_id", "camera", "frame of the images"),
    Param("fov_deg", 60.0, "horizontal field of view, for CameraInfo", range=(1.0, 179.0),
          dynamic_typing=True),
    Param("topic", topics.CAMERA_IMAGE, "Image topic (CameraInfo beside it)"),
)

RECORDER_TOPICS = [topics.CAMERA_IMAGE, topics.WRIST_CAMERA_IMAGE, topics.JOINT_STATES,
                   topics.LEADER_JOINT_STATES]
RECORDER_TYPES = [f"{topics.CAMERA_IMAGE}:sensor_msgs/msg/Image",
                  f"{topics.WRIST_CAMERA_IMAGE}:sensor_msgs/msg/Image",
                  f"{topics.JOINT_STATES}:sensor_msgs/msg/JointState",
                  f"{topics.LEADER_JOINT_STATES}:sensor_msgs/msg/JointState"]
EPISODE_PARAMS = ("episode_success", "episode_notes", "episode_mode", "episode_extra")

RECORDER: tuple[Param, ...] = (
    Param("dataset_dir", "~/genpol_data/demos", "one episode_<n>/ bag directory per episode"),
    Param("topics", RECORDER_TOPICS, "topics recorded"),
    Param("topic_types", RECORDER_TYPES, "'/topic:pkg/msg/Type' for topics with no publisher "
                                         "yet, so subscriptions exist before they appear"),
    Param("task", "", "task text stored with each episode (read at start and stop)",
          read_only=False),
    Param("fps", 30.0, "the rate the dataset is built at (stored with each episode)",
          read_only=False, range=(0.1, 1000.0)),
    Param("joint_names", list(robot.JOINT_NAMES), "joints stored with each episode",
          read_only=False),
    Param("backend", "auto", "auto: rosbag2_py if a ROS distribution has it, else mcap",
          choices=("auto", "mcap", "rosbag2_py")),
    Param("compression", "none", "mcap backend: per-chunk compression",
          choices=("none", "zstd", "lz4")),
    Param("flush_period_s", 0.5, "at most this much is lost if the recorder is killed",
          range=(0.01, 60.0)),
    Param("discovery_period_s", 1.0, "look for topics not seen yet, and new publishers' QoS",
          range=(0.01, 60.0)),
    Param("min_free_mb", 200.0, "start_episode refuses below this much free disk",
          range=(0.0, math.inf)),
    Param("queue_depth", 50, "subscription queue depth", range=(1, 100000)),
    Param("mode_topic", topics.LEADER_MODE, "the demonstration's mode (std_msgs/String)"),
    Param("status_period_s", 1.0, "~/status publishing period", range=(0.01, 60.0)),
    Param("episode_success", "", "outcome read at ~/stop_episode: true, false or empty "
                                 "(unknown); cleared after", read_only=False,
          dynamic_typing=True, in_file=False),
    Param("episode_notes", "", "notes read at ~/stop_episode; cleared after", read_only=False,
          dynamic_typing=True, in_file=False),
    Param("episode_mode", "", "mode read at ~/stop_episode (overrides mode_topic); cleared after",
          read_only=False, dynamic_typing=True, in_file=False),
    Param("episode_extra", "", "JSON object merged into the episode's extra metadata at "
                               "~/stop_episode; cleared after", read_only=False,
          dynamic_typing=True, in_file=False),
)

TELEOP: tuple[Param, ...] = (
    Param("leader_topic", topics.LEADER_JOINT_STATES, "the leader arm's joint states in"),
    *_controller_topics(),
    Param("lead_time_s", 0.05, "each trajectory reaches the leader's pose after this long "
                               "(longer where the velocity limits ask)", range=(0.001, 10.0)),
)

SIM_LEADER_MODES = ("random", "alternate", *dict.fromkeys(m for ms in tasks.MODES.values()
                                                         for m in ms))
SIM_LEADER: tuple[Param, ...] = (
    Param("mode", "random", "random (50/50), alternate (by episode number) or one task mode",
          choices=SIM_LEADER_MODES),
    Param("seed", 0, "random modes and expert variations", range=SEED_RANGE),
    Param("rate_hz", tasks.RATE_HZ, "leader joint states per second", range=(1.0, 1000.0)),
    Param("status_topic", topics.SIM_EPISODE, "sim_arm's episode status in"),
    Param("leader_topic", topics.LEADER_JOINT_STATES, "leader joint states out"),
    Param("mode_topic", topics.LEADER_MODE, "each plan's mode out (latched)"),
    Param("wait_for_start", False, "true: hold the start pose until ~/start is called"),
    Param("start_delay_s", 1.0, "wait_for_start false: play this long after a new episode",
          range=(0.0, 60.0)),
)

#: node name -> its parameters
TABLES: dict[str, tuple[Param, ...]] = {
    "executor": EXECUTOR, "planner": PLANNER, "sim_arm": SIM_ARM, "camera": CAMERA,
    "recorder": RECORDER, "teleop": TELEOP, "sim_leader": SIM_LEADER,
}


def defaults(node: str, in_file_only: bool = False) -> dict[str, Any]:
    """{name: default} of `node`'s table (what config/<node>.yaml must hold, in_file_only)."""
    return {p.name: p.default for p in TABLES[node] if p.in_file or not in_file_only}
