"""ros2 launch genpol bringup.launch.py [sim:=true] [policy_path:=DIR] [executor_mode:=ensemble]
[rviz:=false] [use_mock_hardware:=true] [task:=reach_around] [seed:=0] [scene_seed:=-1]

No logic of its own: nodes and parameters come from genpol.graph and config/*.yaml, the same
definition `genpol bringup` starts without ROS launch.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from genpol import graph


def _nodes(context):
    args = graph.resolve_arguments(
        {a.name: LaunchConfiguration(a.name).perform(context) for a in graph.ARGUMENTS})
    actions = []
    for spec in graph.select(args):
        params_file, values = graph.parameters(spec, args)
        params = ([str(params_file)] if params_file else []) + ([values] if values else [])
        actions.append(Node(package=spec.package, executable=spec.executable, name=spec.name,
                            parameters=params, arguments=graph.node_arguments(spec),
                            output="screen", emulate_tty=True))
    return actions


def generate_launch_description():
    return LaunchDescription(
        [DeclareLaunchArgument(a.name, default_value=a.default, description=a.description)
         for a in graph.ARGUMENTS] + [OpaqueFunction(function=_nodes)])
