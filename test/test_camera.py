"""Camera path: image conversions, the reconnecting capture, and the camera node over real DDS."""

from __future__ import annotations

import numpy as np
import pytest

from genpol.camera.image import (CHANNELS, camera_info_fields, camera_info_topic, from_image_fields,
                            to_image_fields)

cv2 = pytest.importorskip("cv2")

from genpol.camera.capture import (  # noqa: E402
    ENDED, STREAMING, WAITING, Capture, CaptureConfig, parse_source)

N_FRAMES, W, H = 20, 32, 24


def write_video(path, n=N_FRAMES):
    """A small MJPG .avi whose frame i is uniformly gray level 10*i, so frames can be told apart."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 20.0, (W, H))
    assert writer.isOpened()
    for i in range(n):
        writer.write(np.full((H, W, 3), 10 * i, np.uint8))
    writer.release()
    return path


@pytest.fixture
def video(tmp_path):
    return write_video(tmp_path / "clip.avi")


class FakeClock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


# --- imaging -------------------------------------------------------------------------------------

def _rgb(h=5, w=7, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8"])
def test_color_encodings_round_trip(encoding):
    img = _rgb()
    f = to_image_fields(img, encoding)
    assert (f["height"], f["width"], f["encoding"], f["is_bigendian"]) == (5, 7, encoding, 0)
    assert f["step"] == 7 * CHANNELS[encoding] and len(f["data"]) == f["step"] * 5
    back = from_image_fields(f["height"], f["width"], f["encoding"], f["step"], f["data"])
    assert back.dtype == np.uint8 and back.shape == (5, 7, 3)
    np.testing.assert_array_equal(back, img)


def test_byte_order_of_each_encoding():
    img = np.array([[[10, 20, 30]]], np.uint8)
    assert to_image_fields(img, "rgb8")["data"] == bytes([10, 20, 30])
    assert to_image_fields(img, "bgr8")["data"] == bytes([30, 20, 10])
    assert to_image_fields(img, "rgba8")["data"] == bytes([10, 20, 30, 255])
    assert to_image_fields(img, "bgra8")["data"] == bytes([30, 20, 10, 255])


def test_mono8_is_gray_replicated_to_rgb():
    gray = np.repeat(np.arange(35, dtype=np.uint8).reshape(5, 7, 1) * 7, 3, axis=2)
    f = to_image_fields(gray, "mono8")
    assert f["step"] == 7 and len(f["data"]) == 35
    np.testing.assert_array_equal(from_image_fields(5, 7, "mono8", 7, f["data"]), gray)
    back = from_image_fields(5, 7, "mono8", 7, to_image_fields(_rgb(), "mono8")["data"])
    assert back.shape == (5, 7, 3) and (back == back[..., :1]).all()


@pytest.mark.parametrize("encoding", sorted(CHANNELS))
def test_padded_rows_are_dropped(encoding):
    img = _rgb(seed=1)
    if encoding == "mono8":
        img = np.repeat(img[..., :1], 3, axis=2)
    f = to_image_fields(img, encoding)
    row = f["step"]
    rows = np.frombuffer(f["data"], np.uint8).reshape(5, row)
    padded = np.concatenate([rows, np.full((5, 3), 0xAB, np.uint8)], axis=1)
    back = from_image_fields(5, 7, encoding, row + 3, padded.tobytes())
    np.testing.assert_array_equal(back, img)


def test_from_fields_accepts_rclpy_array_and_copies():
    import array

    f = to_image_fields(_rgb(), "rgb8")
    buf = array.array("B", f["data"])
    back = from_image_fields(5, 7, "rgb8", 21, buf)
    buf[0] = (buf[0] + 1) % 256
    np.testing.assert_array_equal(back, _rgb())
    back[0, 0, 0] = 0  # writable


def test_conversion_errors_are_clear():
    with pytest.raises(ValueError, match="unsupported image encoding '16UC1'"):
        from_image_fields(2, 2, "16UC1", 4, bytes(8))
    with pytest.raises(ValueError, match="unsupported"):
        to_image_fields(_rgb(), "yuv422")
    with pytest.raises(ValueError, match=r"has 17 bytes, expected 18"):
        from_image_fields(2, 3, "rgb8", 9, bytes(17))
    with pytest.raises(ValueError, match=r"step 8 is shorter"):
        from_image_fields(2, 3, "rgb8", 8, bytes(16))
    with pytest.raises(ValueError, match="uint8 RGB"):
        to_image_fields(np.zeros((2, 3), np.uint8))
    with pytest.raises(ValueError, match="uint8 RGB"):
        to_image_fields(np.zeros((2, 3, 3), np.float32))


def test_camera_info_is_a_centred_pinhole():
    info = camera_info_fields(640, 480, 90.0)
    assert info["k"] == pytest.approx([320, 0, 319.5, 0, 320, 239.5, 0, 0, 1])
    assert info["p"] == pytest.approx([320, 0, 319.5, 0, 0, 320, 239.5, 0, 0, 0, 1, 0])
    assert info["d"] == [0.0] * 5 and info["r"][::4] == [1.0, 1.0, 1.0]
    assert camera_info_fields(640, 480, 90.0, vertical=True)["k"][0] == pytest.approx(240)
    with pytest.raises(ValueError, match="fov_deg"):
        camera_info_fields(640, 480, 180.0)
    assert camera_info_topic("/camera/image_raw") == "/camera/camera_info"
    assert camera_info_topic("/wrist/color/image") == "/wrist/color/camera_info"
    assert camera_info_topic("image_raw") == "camera_info"


# --- capture -------------------------------------------------------------------------------------

def test_parse_source():
    assert parse_source("0") == 0 and parse_source(" 2 ") == 2 and parse_source(1) == 1
    assert parse_source("/dev/video1") == "/dev/video1" and parse_source("a.mp4") == "a.mp4"
    with pytest.raises(ValueError, match="empty"):
        parse_source(" ")
    assert CaptureConfig(source="3").source == 3 and CaptureConfig(source="/dev/video3").is_device
    with pytest.raises(ValueError, match="positive"):
        CaptureConfig(width=0)


def test_video_plays_once_then_ends_without_loop(video):
    with Capture(CaptureConfig(source=str(video), width=16, height=12, loop_video=False)) as cap:
        frames = [cap.read() for _ in range(N_FRAMES)]
        assert all(f is not None and f.shape == (12, 16, 3) and f.dtype == np.uint8 for f in frames)
        assert cap.status.state == STREAMING
        means = [f.mean() for f in frames]
        assert means == pytest.approx([10 * i for i in range(N_FRAMES)], abs=4)
        assert cap.read() is None and cap.status.state == ENDED and "end of" in cap.status.reason
        attempts = cap.open_attempts
        assert cap.read() is None and cap.open_attempts == attempts  # ended: no reopening


def test_video_loops(video):
    with Capture(CaptureConfig(source=str(video), width=W, height=H, loop_video=True)) as cap:
        frames = [cap.read() for _ in range(2 * N_FRAMES + 5)]
        assert all(f is not None and f.shape == (H, W, 3) for f in frames)
        assert frames[N_FRAMES].mean() == pytest.approx(0, abs=4)
        assert frames[N_FRAMES + 3].mean() == pytest.approx(30, abs=4)
        assert cap.status.state == STREAMING


def test_missing_source_backs_off_then_recovers(tmp_path):
    clock = FakeClock()
    path = tmp_path / "later.avi"
    cap = Capture(CaptureConfig(source=str(path), width=W, height=H), clock=clock)
    assert cap.read() is None
    assert cap.status.state == WAITING and f"{path} does not exist" in cap.status.reason
    # attempt k happens at the sum of the delays before it: 0.5, 1, 2, 4, 8, 8 ...
    schedule = [(0.0, 1, 0.5), (0.4, 1, 0.5), (0.5, 2, 1.0), (1.4, 2, 1.0), (1.5, 3, 2.0),
                (3.5, 4, 4.0), (7.5, 5, 8.0), (15.5, 6, 8.0), (23.5, 7, 8.0)]
    for t, attempts, delay in schedule:
        clock.t = t
        assert cap.read() is None
        assert (cap.open_attempts, cap.status.retry_in_s) == (attempts, delay), t
    write_video(path)
    clock.t = 31.4
    assert cap.read() is None  # still inside the backoff delay
    clock.t = 31.5
    assert cap.read() is not None and cap.status.state == STREAMING
    path.rename(tmp_path / "gone.avi")  # disappears while open: noticed at once, delay reset
    assert cap.read() is None and cap.status.state == WAITING and cap.status.retry_in_s == 0.5
    (tmp_path / "gone.avi").rename(path)
    clock.t = 32.0
    assert cap.read() is not None and cap.status.state == STREAMING
    cap.close()


def test_missing_device_is_reported(tmp_path):
    cap = Capture(CaptureConfig(source="/dev/video99"))
    assert cap.read() is None
    assert cap.status.state == WAITING and "/dev/video99 does not exist" in cap.status.reason
    not_video = tmp_path / "notes.txt"
    not_video.write_text("not a video")
    cap = Capture(CaptureConfig(source=str(not_video)))
    assert cap.read() is None and cap.status.state == WAITING
    assert "cannot open" in cap.status.reason or "no readable frames" in cap.status.reason


# --- the camera node over real rclpy -------------------------------------------------------------

def test_camera_node_publishes_survives_removal_and_resumes(ros, video, capfd):
    import rclpy
    from rclpy.parameter import Parameter
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import CameraInfo, Image

    from genpol.nodes.camera import CameraNode
    from ros_helpers import TopicCollector, spinning, wait_for

    node = CameraNode(parameter_overrides=[
        Parameter("source", value=str(video)), Parameter("width", value=16),
        Parameter("height", value=12), Parameter("fps", value=30.0),
        Parameter("frame_id", value="test_cam"), Parameter("fov_deg", value=90.0)])
    probe = rclpy.create_node("probe")
    images = TopicCollector(probe, Image, "/camera/image_raw", qos_profile_sensor_data)
    infos = TopicCollector(probe, CameraInfo, "/camera/camera_info", 10)
    with spinning(node, probe):
        assert images.wait(3, timeout=8), "no frames from the camera node"
        assert infos.wait(1, timeout=2)
        img = images.messages[-1]
        assert (img.width, img.height, img.encoding, img.step) == (16, 12, "rgb8", 48)
        assert img.header.frame_id == "test_cam" and img.header.stamp.sec > 0
        rgb = from_image_fields(img.height, img.width, img.encoding, img.step, img.data)
        assert rgb.shape == (12, 16, 3)
        info = infos.messages[-1]
        assert (info.width, info.height, info.header.frame_id) == (16, 12, "test_cam")
        assert info.k[0] == pytest.approx(8.0) and info.k[2] == pytest.approx(7.5)

        hidden = video.with_name("hidden.avi")
        video.rename(hidden)
        assert wait_for(lambda: node.last_status.state == WAITING, timeout=2)
        attempts = node.capture.open_attempts
        images.clear()
        # The timer keeps ticking and the node retries (first after 0.5 s) without publishing.
        assert wait_for(lambda: node.capture.open_attempts > attempts, timeout=3)
        assert len(images) <= 1  # at most one frame that was already on the wire
        images.clear()

        hidden.rename(video)
        assert images.wait(2, timeout=8), "frames did not resume after the file came back"
        assert node.last_status.state == STREAMING
    err = capfd.readouterr().err
    assert err.count("source unavailable") == 1, err  # once per state change, not per tick
    assert err.count("streaming from") == 2, err
