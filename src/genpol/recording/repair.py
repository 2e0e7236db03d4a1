"""Repairing an episode bag whose recorder was killed, so that standard tools open it.

ros2 bag info/play and rosbags need metadata.yaml, Foxglove and the mcap library's indexed reader
need the MCAP's summary; a killed recorder leaves neither, and its last record may be cut off.
repair_episode copies every complete record up to the tear (mcap_records) into a new MCAP
written as our writer writes one (profile, schemas, channels with their QoS and type hash,
messages with their times and sequence numbers, metadata and attachments; chunked, with the same
compression, indexes, statistics and rosbag2's metadata record). The new file is written beside
the original, fsync'd and renamed over it, so the torn original is gone only once the new one is
whole (keep_torn keeps it as <name>.mcap.torn). Then metadata.yaml as a stopped recording writes
it, then episode.yaml: status "incomplete" (the outcome of a killed recording is unknown; failed
and discarded episodes keep theirs), message_counts, and `repaired` (what was kept and dropped).
A whole bag (an MCAP with its summary, and metadata.yaml) is not touched, so a second repair does
nothing; a bag still being recorded is left alone. A crash during the repair leaves the original
as it was, or the new MCAP without metadata.yaml, which the next repair completes.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from genpol.recording import episode as ep
from genpol.recording.mcap_records import DamagedRecord, McapRecords
from genpol.recording.writer import (METADATA_FILE, TopicInfo, bag_metadata, read_bag_metadata,
                                     write_bag_metadata)

REPAIRED, METADATA_ONLY, WHOLE, LEFT, SKIPPED, FAILED = (
    "repaired", "metadata written", "whole", "left as is", "skipped", "failed")
TORN_SUFFIX = ".torn"


class RepairError(ValueError):
    """A bag that cannot be repaired; the message names the episode, the file and why."""


@dataclass
class RepairResult:
    path: Path
    action: str                 # REPAIRED, METADATA_ONLY, WHOLE, LEFT, SKIPPED or FAILED
    detail: str = ""            # why it was left, skipped (being recorded) or failed
    counts: dict[str, int] = field(default_factory=dict)  # messages kept per topic
    first_ns: int | None = None
    last_ns: int | None = None  # the last kept message's log time
    torn_bytes: int = 0         # the cut-off record (or zeros) dropped from the end
    lost: int | None = None     # messages the bag's own counts promised beyond those kept
    torn_file: Path | None = None
    flush_period_s: float | None = None  # how often its recorder flushed (episode.yaml)

    @property
    def changed(self) -> bool:
        return self.action in (REPAIRED, METADATA_ONLY)

    def describe(self) -> str:
        """One line for a person: what was done, kept and lost."""
        head = f"{self.path.name} ({self.path})"
        if not self.changed:
            return f"{head}: {self.action}" + (f": {self.detail}" if self.detail else "")
        per_topic = ", ".join(f"{t} {n}" for t, n in self.counts.items()) or "no topics"
        kept = f"kept {sum(self.counts.values())} messages ({per_topic})"
        if self.last_ns is not None and self.first_ns is not None:
            kept += (f", the last at {ep.wall_time(self.last_ns)} "
                     f"({(self.last_ns - self.first_ns) * 1e-9:.2f} s after the first)")
        every = f" (it flushed every {self.flush_period_s:g} s)" if self.flush_period_s else ""
        lost = (f"{self.lost} messages its counts promised are lost" if self.lost else
                "nothing it had counted is lost" if self.lost == 0 else
                f"what arrived after its last flush is lost{every}")
        torn = f"; dropped a torn tail of {self.torn_bytes} bytes" if self.torn_bytes else ""
        kept_as = f"; the torn original is kept as {self.torn_file.name}" if self.torn_file else ""
        return f"{head}: {self.action}: {kept}; {lost}{torn}{kept_as}"


def repair_episode(bag_dir: str | Path, *, keep_torn: bool = False,
                   force: bool = False) -> RepairResult:
    """Make bag_dir whole (see the module's docstring). force: repair it even if it says it is
    being recorded (by a process that is running, or on another host). RepairError when it
    cannot be done; the original is then untouched."""
    bag_dir = Path(bag_dir)
    name = bag_dir.name
    if not bag_dir.is_dir():
        raise RepairError(f"{bag_dir} is not a bag directory")
    try:
        meta = ep.read_metadata(bag_dir)
    except ValueError as exc:
        raise RepairError(f"episode {name}: {exc}; fix or remove it, then repair") from None
    busy = _being_recorded(meta, force)
    if busy:
        return RepairResult(bag_dir, SKIPPED, busy)
    try:
        bag_meta = read_bag_metadata(bag_dir)
    except (ValueError, yaml.YAMLError):
        bag_meta = None  # unreadable: written anew below
    mcap = _mcap_file(bag_dir, bag_meta)
    whole = _has_summary(mcap)
    if whole and bag_meta is not None:
        return RepairResult(bag_dir, WHOLE, "nothing to do")

    claimed = _claimed_counts(bag_meta, meta)
    tmp = bag_dir / f".{mcap.name}.repair.tmp"
    copy: _Copy | None = None
    replaced = False
    ep.release_reserve(bag_dir)  # its recorder is gone: the room is the repair's now
    try:
        copy = None if whole else _Copy(mcap, tmp)
        scan = _scan(mcap, copy, name)
        result = RepairResult(bag_dir, METADATA_ONLY if whole else REPAIRED, "",
                              scan.counts, scan.first_ns, scan.last_ns, scan.torn_bytes)
        if claimed is not None:
            result.lost = max(0, claimed - sum(scan.counts.values()))
        with contextlib.suppress(AttributeError, KeyError, TypeError, ValueError):
            result.flush_period_s = float(((meta or {}).get("recorder") or {})["flush_period_s"])
        torn = mcap.with_name(mcap.name + TORN_SUFFIX) if keep_torn and copy else None
        new_meta = _repaired_metadata(meta, result, rewritten=copy is not None, torn=torn)
        custom = (ep.bag_custom_data(new_meta) if new_meta is not None
                  else dict((bag_meta or {}).get("custom_data") or {}))
        info = bag_metadata(mcap.name, scan.topics, scan.counts, scan.first_ns, scan.last_ns,
                            custom)
        if copy is not None:
            copy.finish(info)
            if torn is not None:
                _keep(mcap, torn)
                result.torn_file = torn
            os.replace(tmp, mcap)
            replaced = True
            ep.fsync_dir(bag_dir)
        write_bag_metadata(bag_dir, info)
        if new_meta is not None:
            ep.write_metadata(bag_dir, new_meta)
    except OSError as exc:
        state = ("the MCAP is repaired; repair again to write its metadata" if replaced else
                 "the original is untouched")
        raise RepairError(f"episode {name}: repairing {mcap} failed: {exc.strerror or exc}"
                          + (f" ({exc.filename})" if exc.filename else "")
                          + f"; {state}") from None
    finally:
        if copy is not None:
            copy.abort()
        if not replaced:  # ours, or one a crashed repair left behind
            with contextlib.suppress(OSError):
                tmp.unlink()
    return result


def repair_dataset(dataset_dir: str | Path, *, keep_torn: bool = False,
                   force: bool = False) -> Iterator[RepairResult]:
    """repair_episode for each episode of a dataset directory, discarded ones left as they are;
    a failure is a result (FAILED), not a raise."""
    for _, bag_dir in ep.episode_dirs(Path(dataset_dir)):
        try:
            meta = ep.read_metadata(bag_dir)
        except (ValueError, OSError):
            meta = None  # repair_episode reports it
        if meta is not None and meta.get("status") == ep.DISCARDED:
            yield RepairResult(bag_dir, LEFT, "discarded (name its directory to repair it)")
            continue
        yield _guarded(bag_dir, keep_torn, force)


def repair_paths(paths: Iterable[str | Path], *, keep_torn: bool = False,
                 force: bool = False) -> Iterator[RepairResult]:
    """Each path an episode directory (repaired whatever its status) or a dataset directory
    (repair_dataset)."""
    for item in paths:
        path = Path(item).expanduser()
        if _is_bag_dir(path):
            yield _guarded(path, keep_torn, force)
        elif not path.is_dir():
            yield RepairResult(path, FAILED, "no such directory")
        elif not ep.episode_dirs(path):
            yield RepairResult(path, FAILED, "neither an episode bag nor a dataset directory "
                                             "of them (episode_NNNNNN)")
        else:
            yield from repair_dataset(path, keep_torn=keep_torn, force=force)


def _guarded(bag_dir: Path, keep_torn: bool, force: bool) -> RepairResult:
    """One episode's repair as a result: one bad bag must not stop a recorder from starting."""
    try:
        return repair_episode(bag_dir, keep_torn=keep_torn, force=force)
    except RepairError as exc:
        return RepairResult(bag_dir, FAILED, str(exc))
    except Exception as exc:  # a bug, or a bag nobody foresaw: say so and go on
        return RepairResult(bag_dir, FAILED, f"episode {bag_dir.name}: the repair failed "
                                             f"unexpectedly ({type(exc).__name__}: {exc})")


# ---- the parts ---------------------------------------------------------------------------------
def _is_bag_dir(path: Path) -> bool:
    return path.is_dir() and ((path / METADATA_FILE).is_file()
                              or (path / ep.EPISODE_FILE).is_file()
                              or any(path.glob("*.mcap")))


def _being_recorded(meta: dict[str, Any] | None, force: bool) -> str:
    """Why the episode must not be touched now, or ""."""
    if force or meta is None or meta.get("status") != ep.RECORDING:
        return ""
    rec = meta.get("recorder") or {}
    if ep.process_alive(meta):
        return (f"still being recorded (its recorder, pid {rec.get('pid')}, is running; if that "
                "process is not a recorder writing it, repair it with --force)")
    host = rec.get("host")
    if host and host != socket.gethostname():
        return (f"it says it is being recorded on host {host}; if no recorder there still "
                "writes it, repair it with --force")
    return ""


def _mcap_file(bag_dir: Path, bag_meta: dict[str, Any] | None) -> Path:
    files = (bag_meta or {}).get("relative_file_paths") or []
    if len(files) == 1 and (bag_dir / Path(files[0]).name).is_file():
        return bag_dir / Path(files[0]).name
    found = sorted(bag_dir.glob("*.mcap"))
    if len(found) != 1:
        raise RepairError(f"episode {bag_dir.name}: {bag_dir} holds {len(found)} .mcap files, "
                          "expected 1 (a recorder writes one per episode)")
    return found[0]


def _has_summary(mcap: Path) -> bool:
    """Whether the mcap library's indexed reader finds a footer and a summary with statistics."""
    from mcap.reader import make_reader

    try:
        with open(mcap, "rb") as f:
            summary = make_reader(f).get_summary()
    except Exception:  # torn: the library raises whatever the bytes at the end make it raise
        return False
    return summary is not None and summary.statistics is not None


def _claimed_counts(bag_meta: dict[str, Any] | None, meta: dict[str, Any] | None) -> int | None:
    """How many messages the bag said it held: metadata.yaml's, else episode.yaml's counts at
    stop; None when neither survived (a killed recording)."""
    if bag_meta is not None and bag_meta.get("message_count") is not None:
        return int(bag_meta["message_count"])
    counts = (meta or {}).get("message_counts")
    if isinstance(counts, dict) and counts:
        return sum(int(n) for n in counts.values())
    return None


def _repaired_metadata(meta: dict[str, Any] | None, result: RepairResult, *, rewritten: bool,
                       torn: Path | None) -> dict[str, Any] | None:
    if meta is None:
        return None  # a bag recorded by something else: no episode.yaml to keep up to date
    meta = dict(meta)
    status = meta.get("status")
    if status == ep.RECORDING or (status == ep.COMPLETE and rewritten and result.lost != 0):
        meta["status"] = ep.INCOMPLETE
    meta["message_counts"] = dict(result.counts)
    now = time.time_ns()
    meta["repaired"] = {
        "time": ep.wall_time(now), "time_ns": now,
        "messages": sum(result.counts.values()), "last_time_ns": result.last_ns,
        "torn_bytes": result.torn_bytes, "lost_messages": result.lost,
        "mcap_rewritten": rewritten, "torn_file": torn.name if torn else None}
    return meta


def _keep(mcap: Path, torn: Path) -> None:
    """The torn original under another name, before the repaired file replaces it."""
    with contextlib.suppress(FileNotFoundError):
        torn.unlink()
    try:
        os.link(mcap, torn)
    except OSError:  # a file system without hard links
        shutil.copy2(mcap, torn)


@dataclass
class _Scanned:
    topics: list[TopicInfo] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    first_ns: int | None = None
    last_ns: int | None = None
    torn_bytes: int = 0


class _Copy:
    """The new MCAP being written beside the original, with its compression and header."""

    def __init__(self, mcap: Path, tmp: Path):
        from mcap.writer import CompressionType, Writer

        from genpol import __version__ as version

        header, compression = _header_and_compression(mcap)
        kind = {"zstd": CompressionType.ZSTD, "lz4": CompressionType.LZ4}.get(
            compression or "", CompressionType.NONE)
        self._file = open(tmp, "wb")  # noqa: SIM115  (closed by finish / abort)
        self.writer = Writer(self._file, chunk_size=1 << 20, compression=kind)
        library = f"genpol {version} (mcap python, repaired)"
        if header is not None and header.library:
            library = f"{header.library}; repaired by genpol {version}"
        self.writer.start(profile=header.profile if header is not None else "ros2",
                          library=library)

    def finish(self, info: dict[str, Any]) -> None:
        self.writer.add_metadata("rosbag2", {"serialized_metadata": yaml.safe_dump(
            info, sort_keys=False)})
        self.writer.finish()
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()

    def abort(self) -> None:
        with contextlib.suppress(OSError):
            self._file.close()


def _header_and_compression(mcap: Path) -> tuple[Any, str | None]:
    """The Header record and the first chunk's compression, reading no further than that."""
    records = McapRecords(mcap)
    with contextlib.suppress(DamagedRecord):  # the full scan reports it
        for _ in records:
            if records.compression is not None:
                break
    return records.header, records.compression


def _scan(mcap: Path, copy: _Copy | None, name: str) -> _Scanned:
    """Every complete record of mcap: counted, and copied into `copy` when given."""
    from mcap.records import Attachment, Channel, Message, Metadata, Schema

    out = _Scanned()
    w = copy.writer if copy is not None else None
    schemas: dict[int, tuple[int, str]] = {}   # old id -> (new id, msgtype)
    channels: dict[int, tuple[int, str]] = {}  # old id -> (new id, topic)
    records = McapRecords(mcap)
    try:
        for offset, r in records:
            if isinstance(r, Schema) and r.id not in schemas:
                new_id = w.register_schema(r.name, r.encoding, r.data) if w else r.id
                schemas[r.id] = (new_id, r.name)
            elif isinstance(r, Channel) and r.id not in channels:
                if r.schema_id and r.schema_id not in schemas:
                    raise RepairError(f"episode {name}: {mcap}: topic {r.topic} refers to "
                                      f"unknown schema {r.schema_id} (at byte {offset})")
                schema_id, msgtype = schemas.get(r.schema_id, (0, ""))
                new_id = (w.register_channel(r.topic, r.message_encoding, schema_id,
                                             dict(r.metadata)) if w else r.id)
                channels[r.id] = (new_id, r.topic)
                out.topics.append(TopicInfo(r.topic, msgtype, _qos(r.metadata),
                                            r.metadata.get("topic_type_hash", "")))
                out.counts.setdefault(r.topic, 0)
            elif isinstance(r, Message):
                if r.channel_id not in channels:
                    raise RepairError(f"episode {name}: {mcap}: a message on unknown channel "
                                      f"{r.channel_id} (at byte {offset})")
                new_id, topic = channels[r.channel_id]
                if w:
                    w.add_message(new_id, log_time=r.log_time, data=r.data,
                                  publish_time=r.publish_time, sequence=r.sequence)
                out.counts[topic] += 1
                out.first_ns = r.log_time if out.first_ns is None else min(out.first_ns,
                                                                           r.log_time)
                out.last_ns = r.log_time if out.last_ns is None else max(out.last_ns,
                                                                         r.log_time)
            elif isinstance(r, Metadata) and w and r.name != "rosbag2":  # that one is rewritten
                w.add_metadata(r.name, dict(r.metadata))
            elif isinstance(r, Attachment) and w:
                w.add_attachment(r.create_time, r.log_time, r.name, r.media_type, r.data)
    except DamagedRecord as exc:
        raise RepairError(f"episode {name}: {mcap}: {exc}: damage inside the file, not a torn "
                          "end; not repaired") from None
    out.torn_bytes = records.torn_bytes
    return out


def _qos(metadata: dict[str, str]) -> list[dict[str, Any]]:
    """offered_qos_profiles of a channel back as the list rosbag2 (version 8) stores as text."""
    try:
        profiles = yaml.safe_load(metadata.get("offered_qos_profiles") or "") or []
    except yaml.YAMLError:
        return []
    return profiles if isinstance(profiles, list) else []
