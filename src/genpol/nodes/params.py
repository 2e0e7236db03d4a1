"""Declares a node's parameter table (genpol.parameters) with rclpy ParameterDescriptors.

rclpy then refuses read-only and out-of-range values by itself and `genpol param describe` (or
`ros2 param describe`) shows each parameter's description and limits. The table's choices and
the node's own checks run in one on-set callback, registered before the parameters are declared,
so start-up values (config file, launch, overrides) pass the same checks as a later
`genpol param set` (or `ros2 param set`). A node applies a change in a post-set callback, which
only ever sees values that passed. Every refused set is logged as a warning with its reason, so
the node's log shows it, not only whoever asked.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence

from rcl_interfaces.msg import (FloatingPointRange, IntegerRange, ParameterDescriptor,
                                SetParametersResult)
from rclpy.exceptions import (InvalidParameterTypeException, InvalidParameterValueException,
                               ParameterNotDeclaredException)
from rclpy.node import Node
from rclpy.parameter import Parameter

from genpol.parameters import Param

#: a node's own check of one new value: empty if fine, else the reason (naming the parameter)
Check = Callable[[Parameter], str]


def descriptor(param: Param) -> ParameterDescriptor:
    d = ParameterDescriptor(description=param.description, read_only=param.read_only,
                            dynamic_typing=param.dynamic_typing)
    if param.choices:
        d.additional_constraints = f"one of: {', '.join(param.choices)}"
    if param.range is not None:
        low, high = param.range
        if isinstance(param.default, int) and not isinstance(param.default, bool):
            d.integer_range = [IntegerRange(from_value=int(low), to_value=int(high), step=0)]
        else:
            d.floating_point_range = [FloatingPointRange(from_value=float(low),
                                                         to_value=float(high), step=0.0)]
    return d


def declare(node: Node, table: Sequence[Param], check: Check | None = None) -> None:
    """Declare every parameter of `table` on `node`; a refused start-up value raises ValueError
    naming the node, the parameter and the reason."""
    by_name = {p.name: p for p in table}

    def on_set(params: list[Parameter]) -> SetParametersResult:
        for p in params:
            spec = by_name.get(p.name)
            reason = (spec.check(p.value) if spec else "") or (check(p) if check else "")
            if reason:
                return SetParametersResult(successful=False, reason=reason)
        return SetParametersResult(successful=True)

    node.add_on_set_parameters_callback(on_set)
    _warn_refusals(node)
    for p in table:
        default = list(p.default) if isinstance(p.default, list) else p.default
        try:
            node.declare_parameter(p.name, default, descriptor(p))
        except (InvalidParameterValueException, InvalidParameterTypeException) as exc:
            text = str(exc).removesuffix(f": {p.name}")  # rclpy appends the name
            reason = text.partition("Reason: ")[2] or text
            raise ValueError(f"{node.get_name()}: {reason}") from exc


#: each node's last refused set, for its ~/status
_refusals: weakref.WeakKeyDictionary[Node, str] = weakref.WeakKeyDictionary()


def last_refusal(node: Node) -> str:
    """The last set `node` refused ("name=value: reason"), empty if none."""
    return _refusals.get(node, "")


def _warn_refusals(node: Node) -> None:
    """Log each refused set as a warning with its reason. The set_parameters services answer
    through set_parameters_atomically, and only there does a refusal by rclpy itself (read-only,
    type, range) show as well as one by an on-set callback (the table's, the node's own)."""
    set_atomically = node.set_parameters_atomically

    def warn(params: list[Parameter], reason: str) -> None:
        values = ", ".join(f"{p.name}={p.value!r}" for p in params)
        node.get_logger().warning(f"refused {values}: {reason}")
        _refusals[node] = f"{values}: {reason}"

    def logged(params: list[Parameter]) -> SetParametersResult:
        try:
            result = set_atomically(params)
        except ParameterNotDeclaredException as exc:
            warn(params, str(exc))
            raise
        if not result.successful:
            warn(params, result.reason)
        return result

    node.set_parameters_atomically = logged  # type: ignore[method-assign,assignment]


def values(node: Node, table: Sequence[Param]) -> dict:
    """{name: value} of every parameter in `table`, as the node holds them now."""
    return {p.name: node.get_parameter(p.name).value for p in table}
