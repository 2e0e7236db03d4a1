"""Bag writers: one rosbag2 bag directory with one MCAP file, written as rosbag2 writes it.

Two backends behind one small interface (add_topic, write, flush, close, abort):

- `McapBagWriter` (no ROS distribution needed): the `mcap` library's writer, following
  rosbag2's MCAP conventions (profile "ros2"; one schema per type, encoding "ros2msg", data the
  message definition; channel metadata `offered_qos_profiles` and `topic_type_hash`; a "rosbag2"
  metadata record holding the bag metadata) and writing rosbag2's metadata.yaml (version 8, the
  format ROS 2 Jazzy reads) when the bag is closed. flush() closes the chunk in progress and
  flushes the file, so a killed recorder loses only what came after the last flush.
- `Rosbag2PyWriter`: rosbag2's own Python API when a sourced ROS distribution provides it, with
  the "fastwrite" MCAP preset (no chunks: each message goes to the file as it is written).

rosbags' own rosbag2 Writer is not used for writing: it keeps 1 MiB chunks in memory with no
way to flush them, which would lose seconds of data when the recorder is killed.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml

from genpol.recording import types

METADATA_FILE = "metadata.yaml"
METADATA_VERSION = 8  # rosbag2 in ROS 2 Jazzy: offered_qos_profiles as a YAML string
BACKENDS = ("auto", "mcap", "rosbag2_py")
COMPRESSIONS = ("none", "zstd", "lz4")
#: rmw's "infinite" duration, as rosbag2 writes it in offered QoS profiles
INFINITE = {"sec": 2147483647, "nsec": 4294967295}


@dataclass
class TopicInfo:
    """A topic to record: its type, and the QoS profiles its publishers offer (rosbag2's v8
    dicts: history, depth, reliability, durability, deadline, lifespan, liveliness,
    liveliness_lease_duration, avoid_ros_namespace_conventions), and its RIHS01 type hash
    ("" = take it from the type's definition)."""

    topic: str
    msgtype: str
    qos_profiles: list[dict[str, Any]] = field(default_factory=list)
    type_hash: str = ""


def dump_qos(profiles: list[dict[str, Any]]) -> str:
    """offered_qos_profiles as rosbag2 (metadata version 8) stores it: a YAML list in a string."""
    if not profiles:
        return ""
    return yaml.safe_dump(profiles, sort_keys=False).strip()


def bag_metadata(file_name: str, topics: list[TopicInfo], counts: dict[str, int],
                 first_ns: int | None, last_ns: int | None,
                 custom_data: dict[str, str]) -> dict[str, Any]:
    """rosbag2's bag information (metadata.yaml, and the MCAP's "rosbag2" metadata record) for
    one MCAP file; stamps are the messages' log times."""
    start = first_ns or 0
    duration = last_ns - first_ns if first_ns is not None and last_ns is not None else 0
    total = sum(counts.values())
    return {
        "version": METADATA_VERSION,
        "storage_identifier": "mcap",
        "duration": {"nanoseconds": int(duration)},
        "starting_time": {"nanoseconds_since_epoch": int(start)},
        "message_count": total,
        "topics_with_message_count": [
            {"topic_metadata": {"name": t.topic, "type": t.msgtype,
                                "serialization_format": "cdr",
                                "offered_qos_profiles": dump_qos(t.qos_profiles),
                                "type_description_hash": t.type_hash},
             "message_count": counts.get(t.topic, 0)}
            for t in topics],
        "compression_format": "",
        "compression_mode": "",
        "relative_file_paths": [file_name],
        "files": [{"path": file_name,
                   "starting_time": {"nanoseconds_since_epoch": int(start)},
                   "duration": {"nanoseconds": int(duration)}, "message_count": total}],
        "custom_data": {str(k): str(v) for k, v in custom_data.items()},
        "ros_distro": os.environ.get("ROS_DISTRO", "jazzy"),
    }


def write_bag_metadata(bag_dir: Path, info: dict[str, Any]) -> None:
    """metadata.yaml, atomically (a temporary file beside it, fsync'd, renamed over it)."""
    text = yaml.safe_dump({"rosbag2_bagfile_information": info}, sort_keys=False)
    tmp = Path(bag_dir) / f".{METADATA_FILE}.tmp"
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, Path(bag_dir) / METADATA_FILE)


class BagWriter(Protocol):
    backend: str
    bag_dir: Path
    counts: dict[str, int]  # messages written per topic

    def add_topic(self, info: TopicInfo) -> None: ...
    def write(self, topic: str, stamp_ns: int, data: bytes, publish_ns: int | None = None
              ) -> None: ...
    def flush(self) -> None: ...
    def close(self, custom_data: dict[str, str]) -> None: ...
    def abort(self) -> None: ...


def rosbag2_py_available() -> bool:
    return importlib.util.find_spec("rosbag2_py") is not None


def open_writer(bag_dir: Path, backend: str = "auto", compression: str = "none",
                custom_data: dict[str, str] | None = None) -> BagWriter:
    """Create bag_dir (it must not exist yet) and open a writer of the chosen backend there.

    auto: rosbag2_py where a ROS distribution provides it, else the mcap writer."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "rosbag2_py" and not rosbag2_py_available():
        raise RuntimeError("backend rosbag2_py needs a sourced ROS 2 distribution that has "
                           "rosbag2_py (apt install ros-$ROS_DISTRO-rosbag2-py); or use "
                           "backend mcap")
    if backend == "rosbag2_py" or (backend == "auto" and rosbag2_py_available()):
        try:
            return Rosbag2PyWriter(bag_dir, custom_data or {})
        except Exception:
            if backend == "rosbag2_py":
                raise
            # auto: rosbag2 is there but could not open an MCAP bag (no storage plugin?):
            # write it ourselves rather than lose the episode.
            _remove_empty(Path(bag_dir))
    return McapBagWriter(bag_dir, compression)


def _remove_empty(path: Path) -> None:
    try:
        if path.is_dir() and not any(path.iterdir()):
            path.rmdir()
    except OSError:
        pass


class McapBagWriter:
    backend = "mcap"

    def __init__(self, bag_dir: Path, compression: str = "none", chunk_size: int = 1 << 20):
        from mcap.writer import CompressionType, Writer

        if compression not in COMPRESSIONS:
            raise ValueError(f"compression must be one of {COMPRESSIONS}, got {compression!r}")
        self.bag_dir = Path(bag_dir)
        self.bag_dir.mkdir(parents=False, exist_ok=False)
        self.file_name = f"{self.bag_dir.name}_0.mcap"
        self.path = self.bag_dir / self.file_name
        self.compression = compression
        self._file = open(self.path, "xb")  # noqa: SIM115  (closed by finish / abort)
        self._mcap = Writer(self._file, chunk_size=chunk_size,
                            compression=CompressionType[compression.upper()])
        from genpol import __version__ as version

        self._mcap.start(profile="ros2", library=f"genpol {version} (mcap python)")
        self._schemas: dict[str, int] = {}
        self._channels: dict[str, int] = {}
        self.topics: dict[str, TopicInfo] = {}
        self.counts: dict[str, int] = {}
        self.first_ns: int | None = None
        self.last_ns: int | None = None

    def add_topic(self, info: TopicInfo) -> None:
        if info.topic in self._channels:
            return
        text, type_hash = types.definition(info.msgtype)
        info = TopicInfo(info.topic, info.msgtype, list(info.qos_profiles),
                         info.type_hash or type_hash)
        if info.msgtype not in self._schemas:
            self._schemas[info.msgtype] = self._mcap.register_schema(
                info.msgtype, "ros2msg", text.encode())
        self._channels[info.topic] = self._mcap.register_channel(
            info.topic, "cdr", self._schemas[info.msgtype],
            {"offered_qos_profiles": dump_qos(info.qos_profiles),
             "topic_type_hash": info.type_hash})
        self.topics[info.topic] = info
        self.counts[info.topic] = 0

    def write(self, topic: str, stamp_ns: int, data: bytes, publish_ns: int | None = None
              ) -> None:
        channel = self._channels[topic]
        self._mcap.add_message(channel, log_time=int(stamp_ns), data=bytes(data),
                               publish_time=int(publish_ns if publish_ns else stamp_ns),
                               sequence=self.counts[topic])
        self.counts[topic] += 1
        self.first_ns = stamp_ns if self.first_ns is None else min(self.first_ns, stamp_ns)
        self.last_ns = stamp_ns if self.last_ns is None else max(self.last_ns, stamp_ns)

    def flush(self) -> None:
        """Close the chunk in progress and hand everything to the OS: a SIGKILL after this loses
        nothing written before it."""
        self._mcap.flush()

    def bag_metadata(self, custom_data: dict[str, str]) -> dict[str, Any]:
        return bag_metadata(self.file_name, list(self.topics.values()), self.counts,
                            self.first_ns, self.last_ns, custom_data)

    def close(self, custom_data: dict[str, str]) -> None:
        """Finish the MCAP (summary, indexes, footer), fsync it, then write metadata.yaml."""
        info = self.bag_metadata(custom_data)
        self._mcap.add_metadata("rosbag2", {"serialized_metadata": yaml.safe_dump(
            info, sort_keys=False)})
        self._mcap.finish()
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        write_bag_metadata(self.bag_dir, info)

    def abort(self) -> None:
        """Stop writing without finishing: what was flushed stays readable (bag.read_episode)."""
        with contextlib.suppress(OSError, ValueError):
            self._mcap.flush()
        with contextlib.suppress(OSError):
            self._file.close()


class Rosbag2PyWriter:
    """rosbag2's SequentialWriter (a sourced ROS 2 distribution), MCAP "fastwrite" preset.

    It writes metadata.yaml itself on close; custom_data is fixed when the bag opens, so the
    episode's outcome lives in episode.yaml only."""

    backend = "rosbag2_py"

    def __init__(self, bag_dir: Path, custom_data: dict[str, str]):
        import rosbag2_py

        self._rb = rosbag2_py
        self.bag_dir = Path(bag_dir)
        if self.bag_dir.exists():
            raise FileExistsError(f"{self.bag_dir} exists already")
        options = rosbag2_py.StorageOptions(uri=str(self.bag_dir), storage_id="mcap")
        options.storage_preset_profile = "fastwrite"
        if hasattr(options, "custom_data"):
            options.custom_data = {str(k): str(v) for k, v in custom_data.items()}
        self._writer = rosbag2_py.SequentialWriter()
        self._writer.open(options, rosbag2_py.ConverterOptions("cdr", "cdr"))
        self.topics: dict[str, TopicInfo] = {}
        self.counts: dict[str, int] = {}

    def add_topic(self, info: TopicInfo) -> None:
        if info.topic in self.topics:
            return
        rb = self._rb
        if not info.type_hash:
            info = TopicInfo(info.topic, info.msgtype, info.qos_profiles,
                             types.definition(info.msgtype)[1])
        try:  # Jazzy and later: an id and the type hash
            meta = rb.TopicMetadata(id=len(self.topics), name=info.topic, type=info.msgtype,
                                    serialization_format="cdr",
                                    type_description_hash=info.type_hash)
        except TypeError:  # Humble / Iron
            meta = rb.TopicMetadata(name=info.topic, type=info.msgtype,
                                    serialization_format="cdr",
                                    offered_qos_profiles=dump_qos(info.qos_profiles))
        self._writer.create_topic(meta)
        self.topics[info.topic] = info
        self.counts[info.topic] = 0

    def write(self, topic: str, stamp_ns: int, data: bytes, publish_ns: int | None = None
              ) -> None:
        self._writer.write(topic, bytes(data), int(stamp_ns))
        self.counts[topic] += 1

    def flush(self) -> None:
        """fastwrite writes each message straight through stdio; nothing to close here."""

    def close(self, custom_data: dict[str, str]) -> None:
        close = getattr(self._writer, "close", None)
        if close:
            close()
        self._writer = None

    def abort(self) -> None:
        self._writer = None


def read_bag_metadata(bag_dir: Path) -> dict[str, Any] | None:
    """The rosbag2_bagfile_information of metadata.yaml, or None when there is none."""
    path = Path(bag_dir) / METADATA_FILE
    if not path.is_file():
        return None
    data = yaml.load(io.StringIO(path.read_text()), Loader=getattr(yaml, "CSafeLoader",
                                                                    yaml.SafeLoader))
    if not isinstance(data, dict) or "rosbag2_bagfile_information" not in data:
        raise ValueError(f"{path}: not a rosbag2 metadata file")
    return data["rosbag2_bagfile_information"]
