"""The node parameter tables (genpol.parameters): config/<node>.yaml holds the same names and
defaults, every parameter is described and its default passes its own checks, and the defaults
agree with the core configs the nodes fill from them."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from genpol import parameters
from genpol.parameters import Param

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("node", sorted(parameters.TABLES))
def test_config_file_equals_the_table(node):
    in_file = yaml.safe_load((ROOT / "config" / f"{node}.yaml").read_text())
    assert list(in_file) == [node]
    values = in_file[node]["ros__parameters"]
    table = parameters.defaults(node, in_file_only=True)
    assert list(values) == list(table), "same names, in the same order"
    for name, default in table.items():
        # Same type too: rclpy refuses an integer for a parameter declared as a double.
        assert (type(values[name]), values[name]) == (type(default), default), name


@pytest.mark.parametrize("node", sorted(parameters.TABLES))
def test_every_parameter_is_described_and_its_default_allowed(node):
    table = parameters.TABLES[node]
    assert len({p.name for p in table}) == len(table), "a name twice"
    for p in table:
        assert p.description.strip(), p.name
        assert p.check(p.default) == "", p.name
        if p.range is not None:
            assert isinstance(p.default, (int, float)) and not isinstance(p.default, bool)
            assert all(type(v) is type(p.default) for v in p.range), p.name  # int or double range


def test_check_names_the_parameter_and_the_allowed_values():
    mode = Param("mode", "a", "d", choices=("a", "b"))
    assert mode.check("b") == ""
    assert mode.check("c") == "mode must be one of ['a', 'b'], got 'c'"
    cams = Param("cameras", ["a"], "d", choices=("a", "b"))
    assert cams.check(["a", "b"]) == "" and cams.check(["a", "x"]).endswith("got ['x']")
    rate = Param("rate", 1.0, "d", range=(0.5, 2.0))
    assert rate.check(2.0) == "" and rate.check(2) == ""  # ints too (dynamically typed ones)
    assert rate.check(2.5) == "rate must be in [0.5, 2], got 2.5"


def test_defaults_agree_with_the_core_configs():
    from genpol.control import ExecutorConfig
    from genpol.recording import writer

    core = ExecutorConfig()
    executor = parameters.defaults("executor")
    for name in ("rate_hz", "mode", "ensemble_m", "max_chunk_age_s", "lookahead_points",
                 "velocity_scale"):
        assert executor[name] == getattr(core, name), name
    recorder = {p.name: p for p in parameters.RECORDER}
    assert recorder["backend"].choices == writer.BACKENDS
    assert recorder["compression"].choices == writer.COMPRESSIONS
    capture = pytest.importorskip("genpol.camera.capture")
    config, camera = capture.CaptureConfig(), parameters.defaults("camera")
    assert (camera["source"], camera["width"], camera["height"], camera["fps"],
            camera["loop_video"]) == (str(config.source), config.width, config.height,
                                      config.fps, config.loop_video)


def test_sim_cameras_are_the_scenes():
    scene = pytest.importorskip("genpol.sim.scene", reason="mujoco not installed")
    assert parameters.SIM_CAMERAS == scene.CAMERAS


def test_tables_import_neither_rclpy_nor_torch():
    import subprocess
    import sys

    code = ("import sys, genpol.parameters; "
            "print([m for m in ('torch', 'rclpy', 'cv2', 'mujoco') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
