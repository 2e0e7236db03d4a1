"""colcon builds the repo as an ament_python package, the way a ROS 2 workspace would."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
COLCON = shutil.which("colcon") or str(Path(sys.executable).with_name("colcon"))


def _copy_tracked(dest: Path) -> None:
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True)
    for rel in files.stdout.decode().split("\0"):
        if rel and (ROOT / rel).is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, dest / rel)


@pytest.mark.skipif(not Path(COLCON).exists(), reason="colcon not installed (make setup adds it)")
def test_colcon_build_installs_the_ament_layout(tmp_path):
    ws = tmp_path / "ws"
    _copy_tracked(ws / "src" / "genpol")
    env = {k: v for k, v in os.environ.items() if not k.startswith("COLCON")}
    proc = subprocess.run([COLCON, "build", "--base-paths", "src"], cwd=ws, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    prefix = ws / "install" / "genpol"
    assert (prefix / "share/ament_index/resource_index/packages/genpol").is_file()
    assert (prefix / "share/genpol/package.xml").is_file()
    for folder in ("launch", "config"):
        assert (prefix / "share/genpol" / folder).is_dir()
        for src in (ROOT / folder).glob("*.*"):
            assert (prefix / "share/genpol" / folder / src.name).is_file(), src
    script = prefix / "lib/genpol/genpol"
    assert script.is_file() and os.access(script, os.X_OK)
    site = next((prefix / "lib").glob("python3*/site-packages"))
    assert (site / "genpol" / "cli.py").is_file() or any(site.glob("genpol*.egg-link"))
    # The installed console script runs from the install space.
    run_env = {**env, "PYTHONPATH": f"{site}{os.pathsep}{env.get('PYTHONPATH', '')}"}
    out = subprocess.run([sys.executable, str(script), "--help"], env=run_env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "train" in out.stdout, out.stderr
