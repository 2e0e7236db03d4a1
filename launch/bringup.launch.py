"""ros2 launch genpol bringup.launch.py [sim:=true] [policy_path:=DIR] [executor_mode:=continue]
[rviz:=false] [use_mock_hardware:=true] [calibration:=JSON] [velocity_scale:=0.3]
[leader:=false] [leader_usb_port:=/dev/ttyACM1] [leader_calibration:=JSON] [task:=reach_around]
[seed:=0] [scene_seed:=-1] [scene_spread:=1.0] [NODE.PARAM:=VALUE ...]

NODE.PARAM:=VALUE sets any parameter of a genpol node over its config file, e.g.
planner.inference_rate_hz:=1.0 executor.velocity_scale:=0.3 (ros2 launch passes such undeclared
names through as launch configurations; graph.split_arguments checks and types them).

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
    _, overrides = graph.split_arguments(context.launch_configurations)
    return [Node(package=node.package, executable=node.executable, name=node.name,
                 namespace=node.namespace or None,
                 parameters=[str(p) for p in node.params_files] + (
                     [node.params] if node.params else []),
                 arguments=list(node.arguments), output="screen", emulate_tty=True)
            for node in graph.resolve(args, overrides)]


def generate_launch_description():
    return LaunchDescription(
        [DeclareLaunchArgument(a.name, default_value=a.default, description=a.description)
         for a in graph.ARGUMENTS] + [OpaqueFunction(function=_nodes)])
