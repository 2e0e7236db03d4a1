"""numpy images <-> sensor_msgs/Image and CameraInfo fields, without cv_bridge.

cv_bridge is not on PyPI for ROS 2 (the `cv-bridge` wheel there is a broken ROS 1 package), so the
nodes build messages from these plain dicts. Nothing here imports rclpy or message packages.
Images inside genpol are always (H, W, 3) uint8 RGB.
"""

from __future__ import annotations

import math

import numpy as np

# Channels per pixel of each encoding we read and write (all 8-bit).
CHANNELS: dict[str, int] = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1}

# ITU-R BT.601 luma, the weights OpenCV uses for RGB -> gray.
_LUMA = np.array([0.299, 0.587, 0.114])


def _channels(encoding: str) -> int:
    try:
        return CHANNELS[encoding]
    except KeyError:
        raise ValueError(
            f"unsupported image encoding {encoding!r}; supported: {', '.join(CHANNELS)}"
        ) from None


def to_image_fields(img: np.ndarray, encoding: str = "rgb8") -> dict:
    """Fields of a sensor_msgs/Image holding `img` (H, W, 3) uint8 RGB, rows packed (no padding).

    `data` is bytes; assign it to a message as `array.array("B", data)`: rclpy checks a bytes value
    element by element in Python, which costs milliseconds per frame.
    """
    img = np.asarray(img)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {img.shape} {img.dtype}")
    channels = _channels(encoding)
    if encoding == "rgb8":
        out = img
    elif encoding == "bgr8":
        out = img[..., ::-1]
    elif encoding == "rgba8":
        out = np.concatenate([img, np.full(img.shape[:2] + (1,), 255, np.uint8)], axis=2)
    elif encoding == "bgra8":
        out = np.concatenate([img[..., ::-1], np.full(img.shape[:2] + (1,), 255, np.uint8)], axis=2)
    else:  # mono8
        out = np.clip(np.rint(img @ _LUMA), 0, 255).astype(np.uint8)
    height, width = img.shape[:2]
    return {
        "height": int(height),
        "width": int(width),
        "encoding": encoding,
        "is_bigendian": 0,
        "step": int(width * channels),
        "data": np.ascontiguousarray(out).tobytes(),
    }


def from_image_fields(height: int, width: int, encoding: str, step: int, data) -> np.ndarray:
    """(H, W, 3) uint8 RGB from a sensor_msgs/Image's fields; drops row padding (step > W*C).

    `data` may be bytes, bytearray, memoryview or the array.array("B") rclpy gives; the result is a
    fresh array, so it stays valid after the message is gone.
    """
    channels = _channels(encoding)
    row = width * channels
    if step < row:
        raise ValueError(
            f"step {step} is shorter than a row of {width} {encoding} pixels ({row} bytes)")
    buf = np.frombuffer(data, dtype=np.uint8)
    if buf.size != step * height:
        raise ValueError(
            f"image data has {buf.size} bytes, expected {step * height} "
            f"(step {step} x height {height})"
        )
    pixels = buf.reshape(height, step)[:, :row].reshape(height, width, channels)
    if encoding == "rgb8":
        return pixels.copy()
    if encoding == "bgr8":
        return pixels[..., ::-1].copy()
    if encoding == "rgba8":
        return pixels[..., :3].copy()
    if encoding == "bgra8":
        return pixels[..., 2::-1].copy()
    return np.repeat(pixels, 3, axis=2)  # mono8: gray replicated to RGB


def camera_info_fields(width: int, height: int, fov_deg: float, *, vertical: bool = False) -> dict:
    """Fields of a sensor_msgs/CameraInfo for an ideal pinhole: square pixels, no distortion.

    `fov_deg` is the horizontal field of view, or the vertical one with `vertical=True` (MuJoCo's
    `fovy`). The principal point is the image centre, pixel centres at integers as in ROS.
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    if not 0.0 < fov_deg < 180.0:
        raise ValueError(f"fov_deg must be in (0, 180), got {fov_deg}")
    span = height if vertical else width
    f = (span / 2.0) / math.tan(math.radians(fov_deg) / 2.0)
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    return {
        "width": int(width),
        "height": int(height),
        "distortion_model": "plumb_bob",
        "d": [0.0] * 5,
        "k": [f, 0.0, cx, 0.0, f, cy, 0.0, 0.0, 1.0],
        "r": [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
        "p": [f, 0.0, cx, 0.0, 0.0, f, cy, 0.0, 0.0, 0.0, 1.0, 0.0],
    }


def camera_info_topic(image_topic: str) -> str:
    """The CameraInfo topic beside an image topic: /camera/image_raw -> /camera/camera_info."""
    head, sep, _ = image_topic.rpartition("/")
    return f"{head}{sep}camera_info"
