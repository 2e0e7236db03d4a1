"""Reading recorded episodes: the API the dataset builder uses.

    list_episodes(dataset_dir) -> [bag_dir, ...]   sorted by index, discarded ones left out
    read_episode(bag_dir) -> BagEpisode(path, metadata, topics={topic: TopicData(msgtype,
                                        stamps_ns, messages)})

The MCAP is read record by record with our own framing (mcap_records), so a bag whose recorder
was killed (no metadata.yaml, no summary, a cut-off last record) reads up to its last complete
record; its metadata says status "incomplete" (repair.repair_episode makes such a bag whole for
other tools, and the status stays "incomplete"). A bag that claims to be complete (it has
metadata.yaml) but holds other message counts than it says, a damaged record, or a message that
does not deserialise raises BagError, naming the episode and the file. Messages are decoded by
the bag's own message definitions (rosbags): ROS field names, numeric arrays as numpy arrays
(Image.data is uint8), strings and string arrays as str and list.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from genpol.recording import episode as ep
from genpol.recording import types
from genpol.recording.mcap_records import DamagedRecord, McapRecords
from genpol.recording.writer import read_bag_metadata


class BagError(ValueError):
    """A recorded bag that cannot be read as it claims to be; the message names the episode and
    the file."""


@dataclass
class TopicData:
    msgtype: str                      # e.g. "sensor_msgs/msg/JointState"
    stamps_ns: np.ndarray             # int64, the recorder's receive time of each message
    messages: list = field(default_factory=list)  # deserialised, in receive order
    raw: list[bytes] = field(default_factory=list)  # CDR bytes, only with read_episode(raw=True)


@dataclass
class BagEpisode:
    """One recorded episode as read back from its bag."""

    path: Path
    metadata: dict[str, Any]
    topics: dict[str, TopicData]


def list_episodes(dataset_dir: str | Path) -> list[Path]:
    """Episode bag directories under dataset_dir, by episode index; discarded ones are skipped.

    Episodes whose recorder was killed are listed (read_episode reads what they hold, with
    status "incomplete"), and so is one still being recorded (status "recording"): check
    read_episode(...).metadata["status"] for what to use."""
    out = []
    for _, path in ep.episode_dirs(Path(dataset_dir)):
        try:
            meta = ep.read_metadata(path) or {}
        except ValueError:
            meta = {}  # read_episode will report it
        if meta.get("status") != ep.DISCARDED:
            out.append(path)
    return out


def read_episode(bag_dir: str | Path, *, raw: bool = False,
                 topics: list[str] | None = None) -> BagEpisode:
    """The episode recorded in bag_dir. raw=True also keeps each message's CDR bytes;
    topics restricts decoding to those topics."""
    bag_dir = Path(bag_dir)
    name = bag_dir.name
    if not bag_dir.is_dir():
        raise BagError(f"episode {name}: {bag_dir} is not a bag directory")
    try:
        meta = ep.read_metadata(bag_dir)
    except ValueError as exc:
        raise BagError(f"episode {name}: {exc}") from None
    try:
        bag_meta = read_bag_metadata(bag_dir)
    except (ValueError, yaml.YAMLError) as exc:
        raise BagError(f"episode {name}: {bag_dir / 'metadata.yaml'}: {exc}") from None
    mcap_path = _mcap_file(bag_dir, bag_meta, name)
    content = _read_mcap(mcap_path, name, topics)

    if meta is None:  # a bag recorded by something else: take what rosbag2's metadata offers
        meta = _metadata_from_bag(bag_meta)
    meta = dict(meta)
    counts = {topic: len(stamps) for topic, (_, stamps, _) in content.items()}
    if bag_meta is not None:
        claimed = {t["topic_metadata"]["name"]: int(t.get("message_count", 0))
                   for t in bag_meta.get("topics_with_message_count") or []}
        for topic in sorted(set(claimed) | set(counts)):
            if claimed.get(topic, 0) != counts.get(topic, 0):
                raise BagError(
                    f"episode {name}: {mcap_path} holds {counts.get(topic, 0)} messages on "
                    f"{topic} but {bag_dir / 'metadata.yaml'} says {claimed.get(topic, 0)}: the "
                    "file is truncated or damaged")
    meta["status"] = _status(meta, bag_meta is not None and content.complete)
    meta["message_counts"] = counts

    store = None
    out: dict[str, TopicData] = {}
    for topic, (msgtype, stamps, datas) in content.items():
        if topics is not None and topic not in topics:
            continue
        if store is None:
            try:
                store = types.typestore_for(content.schemas)
            except Exception as exc:  # rosbags raises its own errors for bad definitions
                raise BagError(f"episode {name}: {mcap_path}: unusable message definitions "
                               f"({exc})") from None
        messages = []
        for i, data in enumerate(datas):
            try:
                messages.append(store.deserialize_cdr(data, msgtype))
            except Exception as exc:
                raise BagError(f"episode {name}: {mcap_path}: message {i} on {topic} "
                               f"({msgtype}) does not deserialise: {exc}") from None
        out[topic] = TopicData(msgtype, np.asarray(stamps, dtype=np.int64), messages,
                               list(datas) if raw else [])
    return BagEpisode(bag_dir, meta, out)


def _status(meta: dict[str, Any], finished: bool) -> str:
    status = meta.get("status")
    if status in (ep.DISCARDED, ep.FAILED):
        return status
    if status == ep.RECORDING and ep.process_alive(meta):
        return ep.RECORDING
    return ep.COMPLETE if finished and status in (ep.COMPLETE, None) else ep.INCOMPLETE


def _metadata_from_bag(bag_meta: dict[str, Any] | None) -> dict[str, Any]:
    custom = (bag_meta or {}).get("custom_data") or {}
    text = custom.get("genpol.episode")
    if text:
        try:
            data = yaml.safe_load(text)
            if isinstance(data, dict):
                return data
        except yaml.YAMLError:
            pass
    return {}


def _mcap_file(bag_dir: Path, bag_meta: dict[str, Any] | None, name: str) -> Path:
    if bag_meta is not None:
        files = bag_meta.get("relative_file_paths") or []
        if bag_meta.get("storage_identifier") != "mcap" or len(files) != 1:
            raise BagError(f"episode {name}: {bag_dir}: expected one MCAP file, metadata.yaml "
                           f"lists {files} ({bag_meta.get('storage_identifier')})")
        path = bag_dir / Path(files[0]).name
        if not path.is_file():
            raise BagError(f"episode {name}: {path} is missing")
        return path
    found = sorted(bag_dir.glob("*.mcap"))
    if len(found) != 1:
        raise BagError(f"episode {name}: {bag_dir} holds {len(found)} .mcap files, expected 1")
    return found[0]


class _Content(dict):
    """topic -> (msgtype, [stamp_ns], [cdr bytes]), plus schemas and whether a footer ended it."""

    def __init__(self):
        super().__init__()
        self.schemas: dict[str, tuple[str, str]] = {}
        self.complete = False


def _read_mcap(path: Path, name: str, keep: list[str] | None = None) -> _Content:
    """Every complete record of the MCAP at path, in file order; message bytes only for the
    topics in `keep` (all when None), stamps for all (to check the counts)."""
    from mcap.records import Channel, Message, Schema

    def fail(offset: int, what: str) -> BagError:
        return BagError(f"episode {name}: {path}: {what} (at byte {offset})")

    out = _Content()
    schemas: dict[int, tuple[str, str, str]] = {}  # id -> (name, encoding, text)
    channels: dict[int, tuple[str, str]] = {}  # id -> (topic, msgtype)
    records = McapRecords(path)
    try:
        for offset, record in records:
            if isinstance(record, Schema):
                schemas.setdefault(record.id, (record.name, record.encoding,
                                               record.data.decode("utf-8", "replace")))
            elif isinstance(record, Channel):
                if record.id in channels:
                    continue
                if record.message_encoding != "cdr":
                    raise fail(offset, f"topic {record.topic} is {record.message_encoding!r}, "
                                       "not CDR")
                if record.schema_id not in schemas:
                    raise fail(offset, f"topic {record.topic} refers to unknown schema "
                                       f"{record.schema_id}")
                schema_name, encoding, text = schemas[record.schema_id]
                channels[record.id] = (record.topic, schema_name)
                out.schemas[schema_name] = (encoding, text)
                out.setdefault(record.topic, (schema_name, [], []))
            elif isinstance(record, Message):
                if record.channel_id not in channels:
                    raise fail(offset, f"a message on unknown channel {record.channel_id}")
                topic = channels[record.channel_id][0]
                _, stamps, datas = out[topic]
                stamps.append(record.log_time)
                if keep is None or topic in keep:
                    datas.append(record.data)
    except DamagedRecord as exc:
        raise fail(exc.offset, exc.what) from None
    out.complete = records.complete
    return out
