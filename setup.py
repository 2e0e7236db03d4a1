"""ament_python package `genpol`; also a plain pip package (`pip install -e .`) without ROS."""

from glob import glob
from pathlib import Path

from setuptools import find_packages, setup

PACKAGE = "genpol"
HERE = Path(__file__).resolve().parent


def _requirements(name: str) -> list[str]:
    """One list for pip, the Dockerfile and a native install: requirements/runtime.txt."""
    lines = (HERE / name).read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


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
    install_requires=_requirements("requirements/runtime.txt"),
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
