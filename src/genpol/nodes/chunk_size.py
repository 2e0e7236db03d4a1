"""How many points a serialized JointTrajectory holds, read from its first bytes.

rclpy turns every point of a message into Python objects before a callback sees it: about
0.2 s of the interpreter for 10,000 points, time the executor's tick needs. So the executor
subscribes to the raw bytes, reads the point count here (a few fields, however long the
message) and deserializes only chunks it will keep.

The layout is plain CDR (XCDR1, as every ROS 2 middleware sends JointTrajectory): a 4-byte
encapsulation header (its second byte says the byte order), then header.stamp (two 4-byte
integers), header.frame_id and joint_names (strings: a 4-byte length including the NUL, then
the bytes), then points' 4-byte element count. 4-byte fields are aligned to 4 from the end of the
encapsulation header.
"""

from __future__ import annotations

import struct

_ORDERS = {0: ">", 1: "<"}  # encapsulation kind CDR_BE = 0x0000, CDR_LE = 0x0001


def trajectory_points(raw: bytes) -> int | None:
    """The number of points of a serialized trajectory_msgs/JointTrajectory; None if the bytes
    are not plain CDR or end too soon (the caller then deserializes them the usual way)."""
    if len(raw) < 4 or raw[0] != 0 or raw[1] not in _ORDERS:
        return None
    u32 = struct.Struct(_ORDERS[raw[1]] + "I")
    body = memoryview(raw)[4:]
    size = len(body)

    def read(pos: int) -> tuple[int, int]:
        pos = (pos + 3) & ~3
        return u32.unpack_from(body, pos)[0], pos + 4

    try:
        length, pos = read(8)  # after header.stamp: header.frame_id
        names, pos = read(pos + length)
        if names > size // 4:
            return None
        for _ in range(names):
            length, pos = read(pos)
            pos += length
        points, pos = read(pos)
    except struct.error:  # the bytes end before the field
        return None
    return points if pos <= size else None
