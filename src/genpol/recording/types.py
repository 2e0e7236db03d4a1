"""Message definitions, type hashes and CDR deserialisation without rclpy (through rosbags).

A rosbag2 MCAP stores, per message type, its definition in ros2msg text (the type's .msg fields,
then each type it uses after a line of 80 '=' and `MSG: pkg/Name`), and per topic the type's
RIHS01 hash. Both come from rosbags' Jazzy typestore here; a type it does not know is loaded from
the .msg files a ROS installation puts under share/<pkg>/msg/ (the ament prefixes, or this
Python's own prefix, where the PyPI message wheels install theirs).
"""

from __future__ import annotations

import os
import re
import sys
import threading
from pathlib import Path

from rosbags.typesys import Stores, get_typestore, get_types_from_msg

_LOCK = threading.Lock()
_STORE = None
_BUILTINS = {"bool", "byte", "char", "int8", "uint8", "int16", "uint16", "int32", "uint32",
             "int64", "uint64", "float32", "float64", "string", "wstring", "time", "duration"}


def jazzy_typestore():
    """rosbags' typestore for ROS 2 Jazzy, plus any types registered from .msg files since."""
    global _STORE
    with _LOCK:
        if _STORE is None:
            _STORE = get_typestore(Stores.ROS2_JAZZY)
        return _STORE


def _share_dirs() -> list[Path]:
    prefixes = [p for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    prefixes.append(sys.prefix)
    return [Path(p) / "share" for p in prefixes]


def _msg_file(msgtype: str) -> Path | None:
    pkg, _, name = msgtype.partition("/msg/")
    for share in _share_dirs():
        path = share / pkg / "msg" / f"{name}.msg"
        if path.is_file():
            return path
    return None


def _dependencies(text: str, pkg: str) -> set[str]:
    """pkg/msg/Name of every non-builtin field type in .msg text."""
    deps = set()
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        base = re.sub(r"\[.*?\]|<=\d+", "", line.split()[0])
        if base in _BUILTINS:
            continue
        if "/" in base:
            parts = base.split("/")
            deps.add(f"{parts[0]}/msg/{parts[-1]}")
        else:
            deps.add("std_msgs/msg/Header" if base == "Header" else f"{pkg}/msg/{base}")
    return deps


def _register_from_share(store, msgtype: str, seen: set[str] | None = None) -> None:
    seen = set() if seen is None else seen
    if msgtype in store.fielddefs or msgtype in seen:
        return
    seen.add(msgtype)
    path = _msg_file(msgtype)
    if path is None:
        raise KeyError(f"unknown message type {msgtype!r}: rosbags' Jazzy typestore lacks it and "
                       f"no share/{msgtype}.msg was found under "
                       f"{[str(d) for d in _share_dirs()]} (source the workspace that builds it)")
    text = path.read_text()
    for dep in _dependencies(text, msgtype.split("/")[0]):
        _register_from_share(store, dep, seen)
    store.register(get_types_from_msg(text, msgtype))


def definition(msgtype: str) -> tuple[str, str]:
    """(ros2msg definition text, RIHS01 type hash) of a type such as sensor_msgs/msg/Image.

    Raises KeyError, naming the type, when neither the typestore nor a .msg file knows it."""
    if "/msg/" not in msgtype:
        raise KeyError(f"message types look like pkg/msg/Name, got {msgtype!r}")
    store = jazzy_typestore()
    with _LOCK:
        _register_from_share(store, msgtype)
        text, _ = store.generate_msgdef(msgtype, ros_version=2)
        return text, store.hash_rihs01(msgtype)


_BAG_STORES: dict[frozenset, object] = {}


def typestore_for(schemas: dict[str, tuple[str, str]]):
    """A typestore holding exactly the definitions a bag carries: {msgtype: (encoding, text)}.

    Messages are then decoded by the bag's own definitions, whichever ROS release wrote it.
    Types without a usable definition fall back to the Jazzy typestore's."""
    key = frozenset(schemas.items())
    with _LOCK:
        if key in _BAG_STORES:
            return _BAG_STORES[key]
    store = get_typestore(Stores.EMPTY)
    jazzy = jazzy_typestore()
    types: dict = {}
    for msgtype, (encoding, text) in schemas.items():
        if encoding == "ros2msg" and text.strip():
            types.update(get_types_from_msg(text, msgtype))
        elif msgtype in jazzy.fielddefs:
            with _LOCK:
                text, _ = jazzy.generate_msgdef(msgtype, ros_version=2)
            types.update(get_types_from_msg(text, msgtype))
        else:
            raise KeyError(f"no definition for {msgtype!r} (schema encoding {encoding!r})")
    store.register(types)
    with _LOCK:
        if len(_BAG_STORES) > 32:
            _BAG_STORES.clear()
        _BAG_STORES[key] = store
    return store
