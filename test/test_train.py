"""Training: refusals before any step, checkpoints, the CLI, and DDP on two CPU processes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from genpol.cli import main as cli_main
from genpol.data.arrays import ChunkData, DataError, from_episodes
from genpol.data.sources import load_chunks, save_npz
from genpol.policies import ConfigError, load_policy
from genpol.policies.families import make_policy
from genpol.train import TrainConfig, config_for_data, fit_config, jitter, train

HERE = Path(__file__).parent


def data(n=64, seed=0):
    rng = np.random.default_rng(seed)
    state = rng.normal(size=(n, 3)).astype(np.float32)
    # Learnable: the chunk is a linear function of the state.
    action = np.repeat((state[:, :2] * 0.5)[:, None, :], 4, axis=1)
    return ChunkData(state, action, fps=15.0, joint_names=["j1", "j2"])


def test_nan_in_training_data_names_the_sample():
    d = data()
    d.action[17, 2, 1] = np.nan
    with pytest.raises(DataError, match="action holds NaN or inf in sample 17"):
        ChunkData(d.state, d.action)
    state = d.state.copy()
    state[3, 0] = np.inf
    with pytest.raises(DataError, match="state holds NaN or inf in sample 3"):
        ChunkData(state, np.zeros((64, 4, 2)))


def test_empty_data_is_refused():
    with pytest.raises(DataError, match="empty"):
        ChunkData(np.zeros((0, 3)), np.zeros((0, 4, 2)))
    with pytest.raises(DataError, match="no episodes"):
        from_episodes([], 4)


@pytest.mark.parametrize("kwargs,match", [
    ({"steps": 0}, "steps must be a positive integer"),
    ({"batch_size": -1}, "batch_size"),
    ({"lr": 0.0}, "lr must be > 0"),
    ({"device": "tpu"}, "device must be"),
    ({"state_noise": -0.1}, "state_noise is a fraction"),
    ({"state_noise": 2.0}, "state_noise is a fraction"),
    ({"state_noise_floor": -0.001}, "state_noise_floor is a noise std"),
    ({"state_noise_floor": float("nan")}, "state_noise_floor is a noise std"),
])
def test_bad_train_config_is_refused(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        TrainConfig(**kwargs)


def test_data_and_config_must_agree():
    d = data()
    cfg = config_for_data("mse", d, horizon=8)
    with pytest.raises(DataError, match="horizon=4.*8"):
        train(cfg, d, TrainConfig(steps=1, progress=False))


def test_a_policy_may_use_a_subset_of_the_recorded_cameras(tmp_path):
    d = data()
    d.images = {"front": np.zeros((64, 16, 16, 3), np.uint8),
                "wrist": np.zeros((64, 16, 16, 3), np.uint8)}
    state_only = config_for_data("mse", d, cameras=[])
    train(state_only, d, TrainConfig(steps=2, batch_size=8, progress=False), out_dir=tmp_path)
    assert load_policy(tmp_path).config.cameras == []
    with pytest.raises(DataError, match=r"uses cameras \['top'\] that the data lacks"):
        train(config_for_data("mse", d, cameras=["top"]), d, TrainConfig(steps=1, progress=False))


def test_chunking_repeats_the_last_action_and_marks_it_as_padding():
    states = np.arange(5, dtype=np.float32)[:, None]
    actions = np.arange(1, 6, dtype=np.float32)[:, None]
    d = from_episodes([(states, actions)], horizon=3)
    assert d.action[:, :, 0].tolist() == [[1, 2, 3], [2, 3, 4], [3, 4, 5], [4, 5, 5], [5, 5, 5]]
    assert d.action_is_pad.astype(int).tolist() == [[0, 0, 0], [0, 0, 0], [0, 0, 0], [0, 0, 1],
                                                     [0, 1, 1]]
    held = from_episodes([(states, actions)], horizon=3, holds_at_end=True)
    assert np.array_equal(held.action, d.action) and not held.action_is_pad.any()
    assert not data().action_is_pad.any()  # arrays without a mask: nothing is padded
    with pytest.raises(DataError, match=r"action_is_pad must be a bool array of shape \(5, 3\)"):
        ChunkData(d.state, d.action, action_is_pad=np.zeros((5, 2), bool))


def padded_data() -> ChunkData:
    """data() with the last half of every chunk marked as padding and holding far-off values."""
    d = data()
    d.action_is_pad[:, 2:] = True
    d.action[:, 2:] = 5.0
    return d


def test_the_pad_mask_survives_npz_and_camera_selection(tmp_path):
    d = padded_data()
    save_npz(d, tmp_path / "d.npz")
    assert np.array_equal(load_chunks(tmp_path / "d.npz").action_is_pad, d.action_is_pad)
    d.images = {"front": np.zeros((64, 16, 16, 3), np.uint8)}
    cfg = config_for_data("mse", d, cameras=[])
    assert np.array_equal(fit_config(cfg, d).action_is_pad, d.action_is_pad)


def test_padding_is_masked_unless_asked_not_to():
    def first_loss(d, **kw):
        cfg = config_for_data("mse", d, hidden_dim=16)
        tcfg = TrainConfig(steps=1, batch_size=16, log_every=1, progress=False, **kw)
        return train(cfg, d, tcfg).history[0]["loss"]

    padded = padded_data()
    assert first_loss(padded) != first_loss(padded, mask_padding=False)
    # Without padding the option changes nothing: the same run, bit for bit.
    assert first_loss(data()) == first_loss(data(), mask_padding=False)


def test_state_noise_follows_each_joints_spread_and_spares_still_joints():
    state = torch.zeros(20000, 3)
    std = torch.tensor([0.05, 0.2, 0.0])  # the third joint never moved in the data
    out = jitter(state, std, torch.Generator().manual_seed(0))
    assert torch.allclose(out.std(0), std, atol=0.005)
    assert torch.equal(out[:, 2], state[:, 2])


def first_call(d, cfg, method, take, **kw):
    """take(*args) of the policy's `method` on the first step of training cfg on d."""
    seen = []
    cls = type(make_policy(cfg))
    original = getattr(cls, method)

    def spy(self, *args):
        seen.append(take(*args))
        return original(self, *args)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(cls, method, spy)
        train(cfg, d, TrainConfig(steps=1, progress=False, **kw))
    return seen[-1]


def first_batch(d, cfg, **kw):
    """The state and action of the first minibatch the policy's loss sees, training cfg on d."""
    return first_call(d, cfg, "forward",
                      lambda batch: {k: batch[k].clone() for k in ("state", "action")}, **kw)


def test_state_noise_changes_the_inputs_the_model_sees_not_the_labels():
    cfg = config_for_data("mse", data(), hidden_dim=16)
    clean = first_batch(data(), cfg, batch_size=16)
    noisy = first_batch(data(), cfg, batch_size=16, state_noise=0.1)
    assert torch.equal(clean["action"], noisy["action"])  # same rows drawn, labels untouched
    shift = (noisy["state"] - clean["state"]).abs()
    assert 0 < shift.max() < 0.1 * 5 * float(data().state.std(0).max())


def cue_data(n=256):
    """Two modes (chunks at +1 or -1) from one pose; a third joint reads 10 mrad apart in them,
    as the simulator's idle gripper creeps faster in one mode."""
    mode = np.where(np.arange(n) % 2 == 0, 1.0, -1.0).astype(np.float32)
    state = np.zeros((n, 3), np.float32)
    state[:, 2] = 0.005 * mode
    action = np.repeat(mode[:, None, None], 4, axis=1).repeat(2, axis=2)
    return ChunkData(state, action, fps=10.0, joint_names=["j1", "j2"])


def share_up_at_cue(floor):
    d = cue_data()
    cfg = config_for_data("gmm", d, hidden_dim=32, num_components=2)
    tcfg = TrainConfig(steps=400, batch_size=64, lr=3e-3, progress=False,
                       state_noise_floor=floor)
    policy = train(cfg, d, tcfg).policy
    chunks = policy.predict_chunks(np.array([0.0, 0.0, 0.005], np.float32), num_samples=200,
                                   seed=1)
    return float(np.mean(chunks[:, -1, 0] > 0))


def test_state_noise_floor_keeps_a_sub_resolution_reading_from_choosing_the_mode():
    # Without the floor the still joint's 10 mrad tell the modes apart and the policy follows
    # it; with 30 mrad of noise on every joint it cannot, and samples both modes.
    assert share_up_at_cue(0.0) > 0.9
    assert 0.25 < share_up_at_cue(0.03) < 0.75


def test_state_noise_floor_reaches_joints_that_never_move():
    d = cue_data()
    d.state[:, 2] = 0.0  # a still joint: no spread, so state_noise alone gives it none
    cfg = config_for_data("mse", d, hidden_dim=16)

    def still_joint(**kw):
        return first_batch(d, cfg, batch_size=256, **kw)["state"][:, 2]

    assert torch.equal(still_joint(state_noise=0.5), torch.zeros(256))
    still = still_joint(state_noise_floor=0.01)
    assert 0.008 < float(still.std()) < 0.012


def test_relative_labels_are_offsets_from_the_true_state_not_the_noisy_reading():
    # The floor's noise stands for the sensor's error: taken into the labels, a still joint's
    # offsets (a few micro-rad in the data) would spread by the noise, reach +-100 once
    # normalised by the data's range, and every chunk would copy its reading's error.
    d = cue_data()
    d.state[:, 2] = 0.0
    d.state[:, :2] = np.random.default_rng(0).normal(size=(256, 2)).astype(np.float32)
    d.action = d.action + d.state[:, None, :2]
    d.action[..., 1] = d.state[:, None, 1] + 1e-5  # the still joint: held where it is
    cfg = config_for_data("mse", d, hidden_dim=16, action_frame="relative")
    state, labels = first_call(d, cfg, "_loss",
                               lambda obs, action, is_pad: (obs["state"].clone(), action.clone()),
                               batch_size=64, state_noise_floor=0.01)
    assert float(state.std(0)[2]) > 0.5  # the still joint's input is noisy (normalised)
    assert float(labels.abs().max()) <= 1.0 + 1e-4  # labels within the data's range
    assert float(labels[..., 1].std()) < 0.05  # and the still joint's hold one offset


def test_training_lowers_the_loss_and_writes_checkpoints(tmp_path):
    d = data()
    cfg = config_for_data("mse", d, hidden_dim=64)
    tcfg = TrainConfig(steps=300, batch_size=32, lr=3e-3, log_every=10, checkpoint_every=100,
                       progress=False)
    result = train(cfg, d, tcfg, out_dir=tmp_path / "run")
    first, last = result.history[0]["loss"], result.history[-1]["loss"]
    assert last < first * 0.2
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == [
        "step_0000100", "step_0000200"]
    loaded = load_policy(tmp_path / "run")
    assert loaded.config.fps == 15.0 and loaded.config.joint_names == ["j1", "j2"]
    pred = loaded.predict_chunks(d.state[0])[0]
    assert np.abs(pred - d.action[0]).max() < 0.25


def test_training_is_seeded():
    d = data()
    cfg = config_for_data("gaussian", d, hidden_dim=32)
    runs = [train(cfg, d, TrainConfig(steps=5, batch_size=8, seed=3, progress=False))
            for _ in range(2)]
    second = runs[1].policy.state_dict().values()
    for (k, a), b in zip(runs[0].policy.state_dict().items(), second, strict=True):
        assert torch.equal(a, b), k


def test_ema_weights_are_what_is_saved(tmp_path):
    d = data()
    cfg = config_for_data("mse", d, hidden_dim=32)
    result = train(cfg, d, TrainConfig(steps=20, batch_size=8, ema_decay=0.9, progress=False),
                   out_dir=tmp_path / "ema")
    loaded = load_policy(tmp_path / "ema")
    for key, value in result.policy.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key])


def test_cli_trains_from_an_npz_dataset(tmp_path, capsys):
    save_npz(data(), tmp_path / "d.npz")
    assert load_chunks(tmp_path / "d.npz").joint_names == ["j1", "j2"]
    code = cli_main(["train", "--data", str(tmp_path / "d.npz"), "--family", "gmm",
                     "--out", str(tmp_path / "ck"), "--steps", "20", "--batch-size", "16",
                     "--set", "hidden_dim=32", "--set", "num_components=2", "--no-progress",
                     "--device", "cpu"])
    assert code == 0
    assert "trained gmm for 20 steps on 64 samples" in capsys.readouterr().out
    assert load_policy(tmp_path / "ck").config.num_components == 2


@pytest.mark.parametrize("flag, masked", [([], True), (["--train-on-padding"], False)])
def test_cli_masks_padding_unless_told_to_train_on_it(tmp_path, monkeypatch, flag, masked):
    import genpol.train

    seen = []
    monkeypatch.setattr(genpol.train, "train",
                        lambda config, data, tcfg, out_dir: seen.append(tcfg) or
                        genpol.train.TrainResult(None, [], 0.0, 1))
    save_npz(data(), tmp_path / "d.npz")
    assert cli_main(["train", "--data", str(tmp_path / "d.npz"), "--family", "mse",
                     "--out", str(tmp_path / "ck"), "--steps", "1", "--no-progress",
                     *flag]) == 0
    assert [t.mask_padding for t in seen] == [masked]


def test_cli_reports_bad_input_without_a_traceback(tmp_path, capsys):
    code = cli_main(["train", "--data", str(tmp_path / "missing.npz"), "--out", str(tmp_path)])
    assert code == 2
    assert "does not exist" in capsys.readouterr().err
    save_npz(data(), tmp_path / "d.npz")
    code = cli_main(["train", "--data", str(tmp_path / "d.npz"), "--out", str(tmp_path / "x"),
                     "--family", "nope"])
    assert code == 2 and "unknown policy family 'nope'" in capsys.readouterr().err


def test_ddp_on_two_cpu_processes(tmp_path):
    """Ranks draw different minibatches; only gradient averaging keeps their weights equal."""
    torchrun = Path(sys.executable).with_name("torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [str(torchrun), "--standalone", "--nproc_per_node=2", str(HERE / "ddp_worker.py"),
         str(tmp_path)], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    from safetensors import safe_open
    with safe_open(str(tmp_path / "rank1.safetensors"), "pt") as f:
        assert f.metadata()["world_size"] == "2"
    r0 = load_file(str(tmp_path / "rank0.safetensors"))
    r1 = load_file(str(tmp_path / "rank1.safetensors"))
    for key in r0:
        assert torch.equal(r0[key], r1[key]), key
    # The training moved the weights (so equality is not just the shared initialisation).
    init = config_for_data("mse", data(), hidden_dim=32)
    torch.manual_seed(0)
    from genpol.policies import make_policy
    fresh = make_policy(init).state_dict()
    assert not torch.equal(fresh["head.0.weight"], r0["head.0.weight"])
    assert load_policy(tmp_path / "ckpt").config.hidden_dim == 32
