"""The node `genpol record --sim` (genpol.jobs.record) talks to the recording graph through.

It keeps the latest JSON status of sim_arm, sim_leader's plan and the recorder, and has clients
for the Trigger services and the recorder's parameters, so the job can wait on each before it
starts an episode.
"""

from __future__ import annotations

import json
import time

from rcl_interfaces.srv import SetParameters
from rclpy.context import Context
from std_msgs.msg import String
from std_srvs.srv import Trigger

from genpol import topics
from genpol.nodes.qos import LATCHED
from genpol.nodes.session import ClientNode

TRIGGERS = (topics.service("sim_arm", "reset"), topics.service("sim_leader", "start"),
            topics.service("recorder", "start_episode"), topics.service("recorder", "stop_episode"),
            topics.service("recorder", "discard_episode"))


def _json(msg: String) -> dict:
    return json.loads(msg.data)  # a ValueError drops the message


class RecordClient(ClientNode):
    def __init__(self, context: Context):
        super().__init__("genpol_record", context)
        for key, topic, qos in (("sim", topics.SIM_EPISODE, 10),
                                ("plan", topics.SIM_LEADER_PLAN, LATCHED),
                                ("recorder", topics.RECORDER_STATUS, LATCHED)):
            self.keep_latest(key, String, topic, qos, _json)
        for name in TRIGGERS:
            self.service(Trigger, name)
        self.service(SetParameters, topics.service("recorder", "set_parameters"))

    def status(self, key: str) -> dict:
        """A copy of the latest status under `key` (sim, plan, recorder); {} before the first."""
        return dict(self.latest(key) or {})


class RecorderControlClient(ClientNode):
    """`genpol record --keyboard`'s view of one recorder: its latched status (kept with the
    time it arrived) and clients for its Trigger services and its SetParameters."""

    def __init__(self, context: Context, recorder: str):
        super().__init__("genpol_record_keyboard", context)
        recorder = recorder.strip("/")
        self.keep_latest("status", String, topics.service(recorder, "status"), LATCHED,
                         lambda msg: (time.monotonic(), _json(msg)))
        for what in ("start", "stop", "discard"):
            self.service(Trigger, topics.service(recorder, f"{what}_episode"))
        self.service(SetParameters, topics.service(recorder, "set_parameters"))
