"""ros2 launch genpol bringup.launch.py [sim:=true] [policy_path:=DIR] [executor_mode:=continue]
[rviz:=false] [use_mock_hardware:=true] [task:=reach_around] [seed:=0] [scene_seed:=-1]
[scene_spread:=1.0]

No logic of its own: genpol.graph.resolve gives every node with its parameters (the same specs
`genpol bringup` starts without ROS launch); this file only turns each into a launch_ros Node.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from genpol import graph


def _nodes(context):
    args = {a.name: LaunchConfiguration(a.name).perform(context) for a in graph.ARGUMENTS}
    return [Node(package=node.package, executable=node.executable, name=node.name,
                 parameters=[str(p) for p in node.params_files] + (
                     [node.params] if node.params else []),
                 arguments=list(node.arguments), output="screen", emulate_tty=True)
            for node in graph.resolve(args)]


def generate_launch_description():
    return LaunchDescription(
        [DeclareLaunchArgument(a.name, default_value=a.default, description=a.description)
         for a in graph.ARGUMENTS] + [OpaqueFunction(function=_nodes)])
