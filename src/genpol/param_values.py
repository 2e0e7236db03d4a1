"""Parameter values typed from command-line text, one way for `genpol param set` and bringup's
NODE.PARAM:=VALUE (both `genpol bringup` and `ros2 launch genpol bringup.launch.py`).

Text is read as `ros2 param set` reads it: a YAML scalar or flat list (true/false, 3, 2.5,
[a, b]); anything else stays the text. Two kindnesses on top, where the parameter's type is
known: an integer given for a double is sent as a double (rclpy refuses `rate:=1` for a double
parameter otherwise), and a number or boolean given for a string stays the text. No rclpy here:
graph (plain data) uses it too.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

#: type names as ROS 2 prints them (rcl_interfaces ParameterType, lower case)
SCALARS = ("bool", "integer", "double", "string")

# YAML 1.1 (PyYAML) reads 1e-3 as a string; a parameter value means the number.
_EXPONENT = re.compile(r"[-+]?\d+(\.\d*)?[eE][-+]?\d+")


def type_name(value: Any) -> str:
    """The ROS 2 type `value` is sent as: "double", "string array", ...; "" for none (an empty
    list fits every array type)."""
    if isinstance(value, list):
        kinds = {type_name(v) for v in value}
        return f"{kinds.pop()} array" if len(kinds) == 1 and "" not in kinds else ""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "double"
    return "string" if isinstance(value, str) else ""


def _number(value: Any) -> Any:
    return float(value) if isinstance(value, str) and _EXPONENT.fullmatch(value) else value


def parse(text: str) -> Any:
    """`text` as `ros2 param set` types it: bool, int, float, str or a list of one of them (ints
    and floats mixed become floats); anything else (a mapping, null, bad YAML) is the text."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, list):
        items = [_number(v) for v in value]
        if items and all(type_name(v) in ("integer", "double") for v in items):
            items = [float(v) for v in items] if any(isinstance(v, float) for v in items) \
                else items
        return items if not items or type_name(items) else text
    value = _number(value)
    return value if type_name(value) else text


def typed(text: str, as_type: str = "") -> Any:
    """`text` parsed, then fitted to the parameter's type `as_type` (a type_name; "" when unknown
    or the parameter takes any type): an int becomes a float for a double (and for each element
    of a double array), a number or boolean stays the text for a string."""
    value = parse(text)
    if as_type == "double" and type_name(value) == "integer":
        return float(value)
    if as_type == "double array" and type_name(value) == "integer array":
        return [float(v) for v in value]
    if as_type == "string" and not isinstance(value, str):
        return text
    return value
