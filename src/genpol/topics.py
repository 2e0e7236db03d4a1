"""Every topic and service name the graph uses, written once.

Nodes take these as their parameters' defaults; jobs and tests that talk to a running graph
(eval, record, benchmarks) import them instead of spelling the names again.
"""

from __future__ import annotations

from genpol.robot import CONTROLLERS

JOINT_STATES = "/joint_states"
LEADER_JOINT_STATES = "/leader/joint_states"
LEADER_MODE = "/leader/mode"
CAMERA_IMAGE = "/camera/image_raw"
WRIST_CAMERA_IMAGE = "/wrist_camera/image_raw"
ACTION_CHUNK = "/genpol/action_chunk"
CHUNK_MARKERS = "/genpol/chunk_markers"
EXECUTED_PATH = "/genpol/executed_path"
SIM_EPISODE = "/sim_arm/episode"
SIM_LEADER_PLAN = "/sim_leader/plan"
RECORDER_STATUS = "/recorder/status"
PLANNER_STATUS = "/planner/status"
EXECUTOR_STATUS = "/executor/status"


def controller_command(controller: str) -> str:
    """The trajectory topic a joint_trajectory_controller listens on."""
    if controller not in CONTROLLERS:
        raise ValueError(f"unknown controller {controller!r}; known: {list(CONTROLLERS)}")
    return f"/{controller}/joint_trajectory"


ARM_COMMAND = controller_command("arm_controller")
GRIPPER_COMMAND = controller_command("gripper_controller")


def service(node: str, name: str) -> str:
    """/<node>/<name>: a node's private (~/) service as a client outside it calls it."""
    return f"/{node}/{name}"
