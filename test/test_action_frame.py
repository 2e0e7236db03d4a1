"""Relative action chunks (action_frame: relative): offsets from the joints the chunk was planned
from, in training, in the normalisation, in sampling and in a continued prefix."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from genpol.control.timeline import Prefix
from genpol.data.arrays import ChunkData
from genpol.policies import make_config, make_policy
from genpol.policies.action_frame import from_frame, to_frame
from genpol.policies.config import ConfigError
from genpol.train import TrainConfig, config_for_data, train

H = 8
RAMP = (np.arange(H)[:, None] / H * np.array([0.4, -0.2])).astype(np.float32)


def ramps_from(states: np.ndarray) -> ChunkData:
    """Every chunk starts at its state and ramps the same way: the motion does not depend on
    where the arm is, only the absolute targets do."""
    state = np.asarray(states, np.float32)
    action = state[:, None, :] + RAMP[None]
    return ChunkData(state, action.astype(np.float32), joint_names=["a", "b"], fps=10.0)


def trained(frame: str, data: ChunkData, family: str = "mse", steps: int = 300, **overrides):
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cfg = config_for_data(family, data, action_frame=frame, hidden_dim=32, **overrides)
        return train(cfg, data, TrainConfig(steps=steps, batch_size=64, lr=3e-3, device="cpu",
                                            progress=False)).policy
    finally:
        torch.set_num_threads(threads)


def test_the_frame_round_trips_for_a_state_and_a_history():
    rng = np.random.default_rng(0)
    actions = rng.normal(size=(3, H, 2))
    state = rng.normal(size=(3, 2))
    history = np.stack([rng.normal(size=(3, 2)), state], axis=1)  # (B, T, S), newest last
    for s in (state, history):
        offsets = to_frame(actions, s, "relative")
        np.testing.assert_allclose(offsets[:, 0], actions[:, 0] - state)
        np.testing.assert_allclose(from_frame(offsets[:, None], s, "relative")[:, 0], actions)
    assert to_frame(actions, state, "absolute") is actions


def test_training_normalises_the_offsets_and_sampling_adds_the_state_back():
    rng = np.random.default_rng(1)
    data = ramps_from(rng.uniform(-1.0, 1.0, (256, 2)))
    policy = trained("relative", data)
    # the action range is the offsets' (the ramp: 0 to 0.35 and -0.175 to 0), not the targets'
    np.testing.assert_allclose(policy.normalizer.action_min.numpy(), RAMP.min(0), atol=1e-6)
    np.testing.assert_allclose(policy.normalizer.action_max.numpy(), RAMP.max(0), atol=1e-6)
    for state in ([0.3, -0.6], [-0.8, 0.5]):
        chunk = policy.predict_chunks(np.array(state, np.float32), None, 1, seed=0)[0]
        np.testing.assert_allclose(chunk, np.array(state) + RAMP, atol=0.03)


def test_relative_chunks_start_at_the_arm_from_start_poses_never_seen():
    """Trained on six start poses, asked at others between them: the absolute net misplaces the
    chunk (it must learn the identity from six points), the relative one starts at the arm."""
    rng = np.random.default_rng(2)
    starts = rng.uniform(-1.0, 1.0, (6, 2))
    data = ramps_from(np.repeat(starts, 40, axis=0))
    unseen = rng.uniform(-0.8, 0.8, (20, 2)).astype(np.float32)
    errors = {}
    for frame in ("absolute", "relative"):
        policy = trained(frame, data)
        chunks = np.stack([policy.predict_chunks(s, None, 1, seed=0)[0] for s in unseen])
        errors[frame] = float(np.abs(chunks - (unseen[:, None] + RAMP)).max(axis=(1, 2)).mean())
    assert errors["relative"] < 0.03, errors
    assert errors["absolute"] > 3 * errors["relative"], errors


def test_a_continued_prefix_lands_on_the_committed_steps_in_joint_units():
    """The planner's prefix is in absolute joint positions: a relative policy takes the state off
    before writing it into its samples, and the samples come back on the committed steps."""
    rng = np.random.default_rng(3)
    data = ramps_from(rng.uniform(-1.0, 1.0, (256, 2)))
    policy = trained("relative", data, family="flow", steps=100, down_dims=[16, 32], n_groups=4)
    state = np.array([0.5, -0.4], np.float32)
    # half the policy's own ramp (inside the offsets it was trained on: flow clips its samples
    # to that range)
    playing = (state + 0.5 * RAMP).astype(np.float32)
    prefix = Prefix(playing, committed=3, overlap=6, max_guidance=0.0)
    chunks = policy.predict_chunks(state, None, 8, seed=0, prefix=prefix)
    np.testing.assert_allclose(chunks[:, :3], np.broadcast_to(playing[:3], (8, 3, 2)), atol=1e-4)


def test_a_bad_action_frame_is_refused_with_the_choices():
    with pytest.raises(ConfigError, match="action_frame must be one of"):
        make_config("flow", state_dim=2, action_dim=2, action_frame="delta")
    with pytest.raises(ConfigError, match="state_dim .* < action_dim"):
        make_config("mse", state_dim=2, action_dim=3, action_frame="relative")
    # an absolute policy (every checkpoint written before the option) is unchanged
    assert make_policy(make_config("mse", state_dim=2, action_dim=2)).config.action_frame == \
        "absolute"
