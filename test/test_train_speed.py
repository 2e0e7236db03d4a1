"""Training speed: --threads honoured, steps/s and samples/s reported, the DataLoader path."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml

from genpol.data.arrays import ChunkData
from genpol.data.sources import save_npz
from genpol.policies import ConfigError
from genpol.policies.checkpoint import CONFIG_FILE
from genpol.train import (TrainConfig, _batch, _loader, _to_tensors, _workers,
                          config_for_data, train)


def state_data(n: int = 64) -> ChunkData:
    rng = np.random.default_rng(0)
    state = rng.normal(size=(n, 3)).astype(np.float32)
    action = np.repeat((state[:, :2] * 0.5)[:, None, :], 4, axis=1)
    return ChunkData(state, action, fps=15.0, joint_names=["j1", "j2"])


def image_data(n: int = 32) -> ChunkData:
    data = state_data(n)
    rng = np.random.default_rng(1)
    data.images["front"] = rng.integers(0, 256, (n, 24, 24, 3), dtype=np.uint8)
    return data


@pytest.fixture
def threads_kept():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_cli_threads_are_honoured_and_the_speed_reported(tmp_path):
    save_npz(state_data(), tmp_path / "d.npz")
    # 3: neither torch's default on a 2-core host nor on a 16-core one
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    proc = subprocess.run(
        [sys.executable, "-m", "genpol", "train", "--data", str(tmp_path / "d.npz"),
         "--family", "mse", "--out", str(tmp_path / "ck"), "--steps", "5", "--batch-size", "8",
         "--set", "hidden_dim=16", "--device", "cpu", "--threads", "3", "--no-progress"],
        capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "steps/s" in proc.stdout and "3 torch threads" in proc.stdout
    info = yaml.safe_load((tmp_path / "ck" / CONFIG_FILE).read_text())["_info"]
    assert info["threads"] == 3 and info["train"]["threads"] == 3
    assert info["steps_per_second"] > 0
    assert info["samples_per_second"] == pytest.approx(info["steps_per_second"] * 8, rel=0.01)


def test_threads_setting_and_summary(tmp_path, threads_kept, capsys):
    data = state_data()
    cfg = config_for_data("mse", data, hidden_dim=16)
    result = train(cfg, data, TrainConfig(steps=4, batch_size=8, log_every=1, device="cpu",
                                          threads=1), out_dir=tmp_path)
    assert torch.get_num_threads() == 1 and result.threads == 1
    assert result.steps_per_second > 0 and result.num_workers == 0 and not result.amp
    assert result.samples_per_second == pytest.approx(result.steps_per_second * 8)
    assert "steps_s=" in capsys.readouterr().err  # the progress bar's postfix
    for bad in ({"threads": -1}, {"num_workers": -2}, {"amp": "yes"}):
        with pytest.raises(ConfigError):
            TrainConfig(**bad)


def test_amp_leaves_cpu_training_alone(threads_kept):
    data = state_data()
    cfg = config_for_data("mse", data, hidden_dim=16)
    runs = [train(cfg, data, TrainConfig(steps=3, batch_size=8, device="cpu", progress=False,
                                         threads=1, amp=amp)) for amp in (False, True)]
    assert not runs[1].amp
    for a, b in zip(runs[0].policy.parameters(), runs[1].policy.parameters(), strict=True):
        assert torch.equal(a, b)


def test_the_loader_draws_the_batches_the_loop_draws_and_trains(threads_kept):
    torch.set_num_threads(1)
    data = image_data()
    cfg = config_for_data("mse", data, hidden_dim=16, cnn_width=8)
    tcfg = TrainConfig(steps=3, batch_size=4, log_every=1, device="cpu", progress=False,
                       num_workers=2)
    t = _to_tensors(data, torch.device("cpu"), True)
    direct = _batch(t, 4, torch.Generator().manual_seed(0), torch.device("cpu"), 4)
    draws = _loader(t, tcfg, 2, torch.device("cpu"), 0)
    two = [next(draws) for _ in range(4)]
    del draws
    idx, images = two[0]
    assert idx.shape == (4,) and images["front"].shape == direct["images"]["front"].shape
    assert images["front"].dtype == torch.uint8
    assert not torch.equal(idx, two[1][0])  # each batch drawn anew
    for workers in (0, 1):  # the same batches in this process or one worker as from two
        draws = _loader(t, tcfg, workers, torch.device("cpu"), 0)
        same = [next(draws) for _ in range(4)]
        del draws
        for (i1, im1), (i2, im2) in zip(same, two, strict=True):
            assert torch.equal(i1, i2) and torch.equal(im1["front"], im2["front"])
    result = train(cfg, data, tcfg)
    assert result.num_workers == 2 and len(result.history) == 3
    assert all(np.isfinite(row["loss"]) for row in result.history)


def test_default_workers_use_the_cores_training_leaves(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)))
    auto, cpu, cuda = TrainConfig(), torch.device("cpu"), torch.device("cuda")
    assert _workers(auto, cpu, False, 1) == 0  # state only: in memory
    assert _workers(auto, cpu, True, 8) == 0  # every core trains already
    assert _workers(auto, cpu, True, 6) == 2
    assert _workers(auto, cuda, True, 8) == 4  # the GPU trains: at most 4
    assert _workers(TrainConfig(num_workers=3), cpu, True, 8) == 3
    assert _workers(TrainConfig(num_workers=3), cpu, False, 8) == 0
