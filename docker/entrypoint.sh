#!/bin/bash
# Source ROS 2 and the genpol workspace, then run the command (bringup by default).
set -e
source /opt/ros/jazzy/setup.bash
source /ws/install/setup.bash
exec "$@"
