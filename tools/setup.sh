#!/usr/bin/env bash
# Creates the virtual environment and installs everything genpol needs. Safe to re-run.
#   TORCH_SPEC       torch requirement (default torch==2.13.0, a CPU build here)
#   TORCH_INDEX_URL  extra index for torch, e.g. https://download.pytorch.org/whl/cu128 for CUDA
set -euo pipefail
VENV=${1:-.venv}
cd "$(dirname "$0")/.."
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}

ros_sourced=0
if [ -n "${ROS_DISTRO:-}" ] && python3 -c 'import rclpy' 2>/dev/null; then
  ros_sourced=1
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "genpol setup: creating $VENV"
  if [ "$ros_sourced" = 1 ]; then
    # See the sourced distribution's rclpy and message packages from inside the venv.
    python3 -m venv --system-site-packages "$VENV"
  else
    python3 -m venv "$VENV"
  fi
fi
PIP=("$VENV/bin/python" -m pip install -q --disable-pip-version-check)

if ! "$VENV/bin/python" -c 'import torch' 2>/dev/null; then
  echo "genpol setup: installing $TORCH_SPEC"
  if [ -n "${TORCH_INDEX_URL:-}" ]; then
    "${PIP[@]}" "$TORCH_SPEC" --extra-index-url "$TORCH_INDEX_URL"
  else
    "${PIP[@]}" "$TORCH_SPEC"
  fi
fi

if [ "$ros_sourced" = 1 ]; then
  echo "genpol setup: using ROS 2 $ROS_DISTRO from the sourced distribution"
else
  echo "genpol setup: installing ROS 2 Jazzy rclpy and messages from PyPI wheels"
  "${PIP[@]}" -r requirements/ros-wheels.txt
fi

echo "genpol setup: installing genpol and test tools"
"${PIP[@]}" -e . -r requirements/test.txt
echo "genpol setup: done ($VENV)"
