"""sim_leader: the simulator's scripted experts as a leader arm. It publishes
/leader/joint_states at 30 Hz exactly as a real leader SO-101 would, so simulated demonstrations
go through teleop and the recorder like real ones.

It learns the scene from sim_arm's status topic (/sim_arm/episode: task, seed, scene_seed,
episode), draws the same TaskInstance sim_arm has, and plans a demonstration whenever the episode
number changes. The mode is `mode`: random (50/50 from `seed`), alternate (the task's modes in
turn, by episode number) or one mode by name. Each plan's mode is published on /leader/mode
(std_msgs/String, latched) so the recorder puts it into the episode's metadata; ~/plan
(std_msgs/String, JSON, latched) tells episode, task, mode, duration_s and state (waiting /
playing / done).

Before a plan plays, the leader holds the scene's start pose. With wait_for_start (what
`genpol record --sim` uses) it plays when ~/start (std_srvs/Trigger) is called, else
start_delay_s after the new episode appeared.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_msgs.msg import String
from std_srvs.srv import Trigger

from genpol import robot
from genpol.nodes import params
from genpol.nodes.qos import LATCHED
from genpol.nodes.spin import run_node
from genpol.parameters import SIM_LEADER
from genpol.sim import tasks



class SimLeaderNode(Node):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__("sim_leader", **kwargs)
        params.declare(self, SIM_LEADER)
        p = params.values(self, SIM_LEADER)
        self.mode_choice = p["mode"]
        self.rng = np.random.default_rng(p["seed"])
        self.wait_for_start = p["wait_for_start"]
        self.start_delay_s = p["start_delay_s"]
        self.episode: int | None = None
        self.plan: tasks.ExpertPlan | None = None
        self.plan_info: dict = {}
        self.t0: float | None = None  # when the plan starts playing (node clock, seconds)

        self.leader_pub = self.create_publisher(JointState, p["leader_topic"], 10)
        self.mode_pub = self.create_publisher(String, p["mode_topic"], LATCHED)
        self.plan_pub = self.create_publisher(String, "~/plan", LATCHED)
        self.create_subscription(String, p["status_topic"], self._on_status, 10)
        self.create_service(Trigger, "~/start", self._on_start)
        self.create_timer(1.0 / p["rate_hz"], self._tick)
        self.get_logger().info(f"sim_leader: {self.mode_choice} modes, waiting for "
                               f"{p['status_topic']}")

    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _pick_mode(self, task: str, episode: int) -> str:
        modes = tasks.MODES[task]
        if self.mode_choice == "random":
            return modes[int(self.rng.integers(len(modes)))]
        if self.mode_choice == "alternate":  # by episode number: a missed status cannot shift it
            return modes[episode % len(modes)]
        if self.mode_choice not in modes:
            raise ValueError(f"{task} modes are {modes}, not {self.mode_choice!r}")
        return self.mode_choice

    def _on_status(self, msg: String) -> None:
        try:
            status = json.loads(msg.data)
            episode = int(status["episode"])
            task, seed = status["task"], int(status["seed"])
            scene_seed = status.get("scene_seed")
            spread = float(status.get("scene_spread", 1.0))
        except (ValueError, KeyError, TypeError) as exc:
            self.get_logger().warning(f"unreadable sim_arm status: {exc}",
                                      throttle_duration_sec=5.0)
            return
        if episode == self.episode:
            return
        try:
            inst = tasks.sample(task, seed, scene_seed, spread)
            mode = self._pick_mode(task, episode)
            plan = tasks.expert(inst, mode, self.rng)
        except (ValueError, AssertionError) as exc:
            self.get_logger().error(f"no demonstration for episode {episode}: {exc}")
            return
        self.episode, self.plan = episode, plan
        self.t0 = None if self.wait_for_start else self._now() + self.start_delay_s
        self.plan_info = {"episode": episode, "task": task, "seed": seed,
                          "scene_seed": scene_seed, "mode": mode,
                          "duration_s": round(plan.duration, 3), "state": "waiting"}
        self.mode_pub.publish(String(data=mode))
        self._publish_plan()
        self.get_logger().info(f"episode {episode}: {task} seed {seed}, {mode} demonstration "
                               f"of {plan.duration:.1f} s")

    def _on_start(self, request, response):
        if self.plan is None:
            response.success = False
            response.message = "no scene yet: waiting for sim_arm's status (/sim_arm/episode)"
        else:
            self.t0 = self._now()
            self._set_state("playing")
            response.success = True
            response.message = (f"playing the {self.plan_info['mode']} demonstration of "
                                f"episode {self.episode} ({self.plan.duration:.2f} s)")
        return response

    def _set_state(self, state: str) -> None:
        if self.plan_info.get("state") != state:
            self.plan_info["state"] = state
            self._publish_plan()

    def _publish_plan(self) -> None:
        self.plan_pub.publish(String(data=json.dumps(self.plan_info)))

    def _tick(self) -> None:
        if self.plan is None:
            return  # a leader arm that is not connected publishes nothing
        now = self._now()
        t = 0.0 if self.t0 is None else max(0.0, now - self.t0)
        if self.t0 is not None and now >= self.t0:
            self._set_state("done" if t > self.plan.duration else "playing")
        msg = JointState(name=list(robot.JOINT_NAMES), position=self.plan(t).tolist())
        msg.header.stamp = self.get_clock().now().to_msg()
        self.leader_pub.publish(msg)


def main(args=None) -> None:
    run_node(SimLeaderNode, args)


if __name__ == "__main__":
    main()
