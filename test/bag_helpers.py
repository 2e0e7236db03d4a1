"""Episodes written straight through genpol.recording (no ROS), for the recorder and repair
tests: n one-joint JointStates, stamped k s, received at 1_000_000 + k ns, flushed every 10."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def record_joint_states(dataset: Path, n: int, stop: bool = True, success: bool = True,
                        compression: str = "none") -> Path:
    """The episode's bag directory; stop=False leaves it open, as a killed recorder would."""
    from genpol.recording.recorder import EpisodeRecorder
    from genpol.recording.types import jazzy_typestore
    from genpol.recording.writer import TopicInfo

    store = jazzy_typestore()
    js, header = store.types["sensor_msgs/msg/JointState"], store.types["std_msgs/msg/Header"]
    stamp = store.types["builtin_interfaces/msg/Time"]
    rec = EpisodeRecorder(dataset, backend="mcap", min_free_mb=1.0, compression=compression)
    _, path = rec.start(task="t", topics=[TopicInfo("/joint_states",
                                                    "sensor_msgs/msg/JointState")])
    for k in range(n):
        msg = js(header=header(stamp=stamp(sec=k, nanosec=0), frame_id=""), name=["a"],
                 position=np.array([float(k)]), velocity=np.array([]), effort=np.array([]))
        rec.write("/joint_states", 1_000_000 + k, store.serialize_cdr(
            msg, "sensor_msgs/msg/JointState"))
        if k % 10 == 9:
            rec.flush()
    if stop:
        rec.stop(success=success)
    return path
