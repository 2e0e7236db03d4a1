"""ament_python package `genpol`; also a plain pip package (`pip install -e .`) without ROS."""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "genpol"
# One `ros2 run genpol <name>` executable per node; the list grows with the nodes.
NODES = ["sim_arm", "camera", "planner", "executor", "recorder", "teleop", "sim_leader"]

setup(
    name=PACKAGE,
    version="0.1.0",
    package_dir={"": "src"},
    packages=find_packages("src"),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.py")),
        (f"share/{PACKAGE}/config", glob("config/*.*")),
    ],
    python_requires=">=3.10",
    install_requires=[
        "numpy>=1.24",
        "pyyaml>=6",
        "torch>=2.2",
        "safetensors>=0.4",
        "diffusers>=0.27",
        "tqdm>=4.60",
        "matplotlib>=3.7",
        "opencv-python-headless>=4.8",
        "mujoco>=3.2",  # sim/: physics + offscreen rendering (brings glfw and PyOpenGL)
        # recording/: message definitions, type hashes and CDR decoding without rclpy
        "rosbags>=0.11",
        # recording/: MCAP writing with flush() (crash-safe episodes) and record parsing
        "mcap>=1.6",
        # evaluation/ (and datasets): MP4 video through FFmpeg's H.264 encoder, no system ffmpeg
        "av>=12",
        # data/lerobot.py: LeRobotDataset v3.0 parquet tables (frames, episodes, tasks)
        "pyarrow>=14",
    ],
    extras_require={"test": ["pytest>=7", "pytest-timeout>=2"]},
    zip_safe=True,
    maintainer="genpol maintainers",
    maintainer_email="maintainers@genpol.invalid",
    description="Generative imitation-learning policies for the SO-ARM101 on ROS 2",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [f"{PACKAGE} = genpol.cli:main"]
        + [f"{node} = genpol.nodes.{node}:main" for node in NODES],
    },
)
