"""camera: OpenCV frames (a USB camera or a video file) out as sensor_msgs/Image + CameraInfo.

Opening, reconnecting and conversion live in genpol.camera (capture, image); this node only
keeps time, fills messages and logs once per change of the capture's state.
"""

from __future__ import annotations

from typing import Any

from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header

from genpol.camera.capture import (ENDED, STREAMING, Capture, CaptureConfig, CaptureStatus,
                                   parse_source)
from genpol.camera.image import camera_info_fields, camera_info_topic
from genpol.nodes import params
from genpol.nodes.messages import IMAGE_QOS, image_msgs
from genpol.nodes.spin import run_node
from genpol.parameters import CAMERA


class CameraNode(Node):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__("camera", **kwargs)
        params.declare(self, CAMERA)
        p = params.values(self, CAMERA)
        self.config = CaptureConfig(
            source=parse_source(str(p["source"])), width=p["width"], height=p["height"],
            fps=float(p["fps"]), loop_video=p["loop_video"])
        self.frame_id = p["frame_id"]
        self.info_fields = camera_info_fields(self.config.width, self.config.height,
                                              float(p["fov_deg"]))
        topic = p["topic"]
        self.capture = Capture(self.config)
        self.image_pub = self.create_publisher(Image, topic, IMAGE_QOS)
        self.info_pub = self.create_publisher(CameraInfo, camera_info_topic(topic), IMAGE_QOS)
        self.last_status = CaptureStatus()
        self.frames_published = 0
        self.timer = self.create_timer(1.0 / self.config.fps, self._tick)
        self.get_logger().info(
            f"camera: {self.capture.description} -> {topic} at {self.config.fps:g} Hz, "
            f"{self.config.width}x{self.config.height} rgb8")

    def _tick(self) -> None:
        frame = self.capture.read()
        self._log_status_change()
        if frame is None:
            return
        header = Header(stamp=self.get_clock().now().to_msg(), frame_id=self.frame_id)
        img, info = image_msgs(frame, header, self.info_fields)
        self.image_pub.publish(img)
        self.info_pub.publish(info)
        self.frames_published += 1

    def _log_status_change(self) -> None:
        status = self.capture.status
        if status.same_as(self.last_status):
            return
        self.last_status = status
        log = self.get_logger()
        if status.state == STREAMING:
            log.info(f"camera: streaming from {status.reason}")
        elif status.state == ENDED:
            log.warning(f"camera: no more frames: {status.reason}; restart the node to replay")
        else:
            c = self.config
            log.warning(f"camera: source unavailable: {status.reason}; retrying with backoff "
                        f"({c.retry_min_s:g} s doubling to {c.retry_max_s:g} s)")

    def close(self) -> None:
        self.capture.close()


def main(args=None) -> None:
    run_node(CameraNode, args)


if __name__ == "__main__":
    main()
