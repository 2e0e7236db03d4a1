"""Another node's parameters through its rcl_interfaces services (list, get, describe, set):
what `genpol param` does where no ROS 2 CLI is installed, on the jobs' one client session.

Values are typed from text as `ros2 param set` types them (genpol.param_values), fitted to the
parameter's current type: `inference_rate_hz 2` sends the double 2.0 the node declared.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from rcl_interfaces.msg import ParameterDescriptor, ParameterType, ParameterValue
from rcl_interfaces.srv import (DescribeParameters, GetParameters, ListParameters,
                                SetParameters)
from rclpy.parameter import Parameter, parameter_value_to_python

from genpol import param_values, topics
from genpol.nodes.session import ClientNode, Session

#: rcl_interfaces ParameterType -> the name ROS 2 prints (param_values.type_name's names)
TYPE_NAMES = {
    ParameterType.PARAMETER_BOOL: "bool", ParameterType.PARAMETER_INTEGER: "integer",
    ParameterType.PARAMETER_DOUBLE: "double", ParameterType.PARAMETER_STRING: "string",
    ParameterType.PARAMETER_BYTE_ARRAY: "byte array",
    ParameterType.PARAMETER_BOOL_ARRAY: "bool array",
    ParameterType.PARAMETER_INTEGER_ARRAY: "integer array",
    ParameterType.PARAMETER_DOUBLE_ARRAY: "double array",
    ParameterType.PARAMETER_STRING_ARRAY: "string array",
}


class Refused(RuntimeError):
    """The node refused a value; the message carries its reason and the value it kept."""


def show(value: Any) -> str:
    """A value as `genpol param set` would take it back: true/false, 2.0, [a, b], plain text
    ("" for the empty text)."""
    if value == "":
        return '""'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(show(v) for v in value) + "]"
    return str(value)


@dataclass(frozen=True)
class Description:
    name: str
    type_id: int  # rcl_interfaces ParameterType of its value
    value: Any
    descriptor: ParameterDescriptor

    @property
    def type(self) -> str:
        return TYPE_NAMES.get(self.type_id, "")

    def text(self) -> str:
        """The parameter as `genpol param describe` prints it."""
        d = self.descriptor
        lines = [f"{self.name} ({self.type or 'not set'}): {d.description or '(no description)'}",
                 f"  value: {show(self.value)}"]
        for r in (*d.integer_range, *d.floating_point_range):
            lines.append(f"  range: {r.from_value} .. {r.to_value}"
                         + (f", step {r.step}" if r.step else ""))
        if d.additional_constraints:
            lines.append(f"  {d.additional_constraints}")
        lines.append("  read-only: set at start-up only" if d.read_only
                     else "  may be set while the node runs")
        if d.dynamic_typing:
            lines.append("  takes any type")
        return "\n".join(lines)


class NodeParameters:
    """The parameters of node `node` ("planner", "/planner" or "/ns/planner") through `client`;
    RuntimeError when it does not answer within `timeout` seconds."""

    def __init__(self, client: ClientNode, node: str, timeout: float = 5.0):
        self.client = client
        self.path = "/" + node.strip("/")
        self.timeout = timeout

    def _call(self, srv_type: type, service: str, request: Any) -> Any:
        name = topics.service(self.path.lstrip("/"), service)
        if not self.client.service(srv_type, name).wait_for_service(timeout_sec=self.timeout):
            raise RuntimeError(self._unreachable())
        return self.client.call(name, request, self.timeout)

    def _unreachable(self) -> str:
        seen = sorted(f"{ns.rstrip('/')}/{name}"
                      for name, ns in self.client.get_node_names_and_namespaces()
                      if name != self.client.get_name())
        network = f"ROS_DOMAIN_ID={os.environ.get('ROS_DOMAIN_ID') or '0 (unset)'}"
        if os.environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE"):
            network += (", ROS_AUTOMATIC_DISCOVERY_RANGE="
                        + os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"])
        return (f"node {self.path} did not answer within {self.timeout:g} s. Is the graph "
                "running (genpol bringup, or ros2 launch genpol bringup.launch.py), with the "
                f"same ROS_DOMAIN_ID as this shell? Here: {network}. Nodes seen: "
                f"{', '.join(seen) or 'none'}.")

    def names(self) -> list[str]:
        result = self._call(ListParameters, "list_parameters", ListParameters.Request())
        return sorted(result.result.names)

    def _value(self, name: str) -> ParameterValue:
        values = self._call(GetParameters, "get_parameters",
                            GetParameters.Request(names=[name])).values
        if not values or values[0].type == ParameterType.PARAMETER_NOT_SET:
            raise RuntimeError(f"node {self.path} has no parameter {name!r}; its parameters: "
                               f"{', '.join(self.names())}")
        return values[0]

    def get(self, name: str) -> Any:
        return parameter_value_to_python(self._value(name))

    def describe(self, name: str) -> Description:
        value = self._value(name)
        descriptors = self._call(DescribeParameters, "describe_parameters",
                                 DescribeParameters.Request(names=[name])).descriptors
        return Description(name, value.type, parameter_value_to_python(value), descriptors[0])

    def set(self, name: str, text: str) -> Any:
        """Set `name` from command-line `text`; the value sent, or Refused with the node's
        reason (the node keeps its old value, which the message names)."""
        current = self.describe(name)
        declared = "" if current.descriptor.dynamic_typing else current.type
        value = param_values.typed(text, declared)
        if declared and (param_values.type_name(value) == declared
                         or (value == [] and declared.endswith(" array"))):
            # The declared type named: rclpy would guess bytes for an empty list.
            param = Parameter(name, Parameter.Type(current.type_id), value)
        else:  # any type taken, or not the declared one: the node says why it refuses
            param = Parameter(name, value=value)
        request = SetParameters.Request(parameters=[param.to_parameter_msg()])
        result = self._call(SetParameters, "set_parameters", request).results[0]
        if not result.successful:
            raise Refused(f"node {self.path} refused {name} = {show(value)}: {result.reason} "
                          f"({name} stays {show(self.get(name))})")
        return value


@contextlib.contextmanager
def connect(node: str, timeout: float = 5.0) -> Iterator[NodeParameters]:
    """NodeParameters of `node` on a session of its own, closed after the block."""
    with Session() as session:
        client = session.spin(ClientNode(f"genpol_param_{os.getpid()}", session.context,
                                         start_parameter_services=False))
        yield NodeParameters(client, node, timeout)
