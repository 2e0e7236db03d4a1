"""How `genpol record --sim --workers N` divides the work and stops: whole start poses per
worker, the user's ROS_DOMAIN_ID refused (each graph needs its own), and a failing worker stops
the others and names itself. The recording itself: test_record_sim.py."""

from __future__ import annotations

import sys
import time

import pytest

from genpol import rosenv
from genpol.jobs import record_workers as rw
from genpol.jobs.record import RecordSettings


@pytest.mark.parametrize("episodes,workers,per_start", [(120, 2, 2), (7, 2, 2), (5, 3, 1),
                                                        (3, 4, 2), (40, 2, 2)])
def test_split_keeps_start_poses_whole_and_covers_every_episode(episodes, workers, per_start):
    parts = rw.split(episodes, workers, per_start)
    assert sum(n for _, n in parts) == episodes
    assert len(parts) == min(workers, -(-episodes // per_start))
    starts = 0
    for first, n in parts:
        assert first == starts  # worker k's poses follow worker k-1's: no gap, no overlap
        starts += -(-n // per_start)
    assert all(n % per_start == 0 for _, n in parts[:-1])
    assert max(n for _, n in parts) - min(n for _, n in parts) <= per_start


def test_worker_command_offsets_the_seed_and_writes_its_own_folder(tmp_path):
    s = RecordSettings(episodes=120, out=tmp_path, seed=1000, scene_spread=3.0,
                       mode="alternate", episodes_per_start=2, workers=2)
    cmd = rw.worker_command(s, 1, 30, 60)
    assert cmd[cmd.index("--seed") + 1] == "1030"
    assert cmd[cmd.index("--episodes") + 1] == "60"
    assert cmd[cmd.index("--out") + 1] == str(tmp_path / "worker-1")
    assert "--workers" not in cmd and "--no-cameras" not in cmd


def test_the_users_domain_is_refused_and_a_private_one_is_not(monkeypatch, tmp_path):
    for key in rosenv.KEYS:
        monkeypatch.delenv(key, raising=False)
    s = RecordSettings(episodes=4, out=tmp_path, workers=2)
    with rosenv.job_network("demo"):
        assert not rosenv.domain_is_users()  # the demo's own private domain
    monkeypatch.setenv("ROS_DOMAIN_ID", "7")
    assert rosenv.domain_is_users()
    with rosenv.job_network("demo"):
        assert rosenv.domain_is_users()
        with pytest.raises(ValueError, match="ROS_DOMAIN_ID=7.*--workers 1"):
            rw.record_parallel(s)
    assert not (tmp_path / "worker-0").exists()  # refused before anything started


def test_a_failing_worker_stops_the_others_and_names_itself(tmp_path):
    from genpol.launcher import Supervisor

    t0 = time.monotonic()
    with Supervisor(tmp_path, grace=5.0, tag="record") as procs:
        sleeper = procs.start("worker-0", [sys.executable, "-c", "import time; time.sleep(60)"])
        procs.start("worker-1", [sys.executable, "-c", "print('no GL here'); raise SystemExit(3)"])
        with pytest.raises(RuntimeError, match=r"(?s)worker-1 exited with 3.*no GL here"):
            rw.watch(procs)
    assert sleeper.poll() is not None  # stopped with the failing one, not left running
    assert time.monotonic() - t0 < 20


def test_the_workers_lines_reach_the_console_with_their_name(tmp_path, capsys):
    from genpol.launcher import Supervisor

    with Supervisor(tmp_path, tag="record") as procs:
        for k in range(2):
            procs.start(f"worker-{k}", [sys.executable, "-c", f"print('episode 1/1 of {k}')"])
        rw.watch(procs, rw._Lines(procs))
    out = capsys.readouterr().out.splitlines()
    assert sorted(out) == ["[worker-0] episode 1/1 of 0", "[worker-1] episode 1/1 of 1"]
