"""Observation history (n_obs_steps): the data's padded history, the policies' shapes and
refusals, the planner's picks by stamp, one step unchanged, and a history that pays for itself."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml

from genpol.data.arrays import ChunkData, DataError, from_episodes, history_rows
from genpol.data.sources import load_chunks, save_npz
from genpol.observation_history import ObservationHistory
from genpol.planning import Candidate, PolicyHolder
from genpol.policies import ConfigError, load_policy, make_config, make_policy, save_policy
from genpol.policies.normalize import compute_stats
from genpol.train import TrainConfig, _batch, _to_tensors, config_for_data, train

IMG = 16
SMALL = {"mse": {}, "flow": {"down_dims": [16, 32], "num_steps": 2}}


def _episodes(lengths, seed=0):
    """Episodes whose state's first value is the row it will have, so rows can be read back."""
    rng = np.random.default_rng(seed)
    out, row = [], 0
    for n in lengths:
        state = rng.normal(size=(n, 3))
        state[:, 0] = np.arange(row, row + n)
        out.append((state, rng.normal(size=(n, 2))))
        row += n
    return out


def _with_camera(data: ChunkData) -> ChunkData:
    frames = np.zeros((len(data), IMG, IMG, 3), np.uint8)
    frames[:, 0, 0, 0] = np.arange(len(data))  # each frame says which row it is
    data.images = {"front": frames}
    return data


def test_the_history_repeats_the_first_frame_at_an_episodes_start():
    data = from_episodes(_episodes([4, 2]), horizon=3)
    assert data.frame_index.tolist() == [0, 1, 2, 3, 0, 1]
    assert history_rows(data, 3).tolist() == [[0, 0, 0], [0, 0, 1], [0, 1, 2], [1, 2, 3],
                                              [4, 4, 4], [4, 4, 5]]
    assert history_rows(data, 1).tolist() == [[i] for i in range(6)]


def test_a_history_needs_to_know_where_episodes_start(tmp_path):
    data = from_episodes(_episodes([3, 3]), horizon=2)
    again = load_chunks(save_npz(data, tmp_path / "d.npz"))  # frame_index survives npz
    assert again.frame_index.tolist() == data.frame_index.tolist()
    bare = ChunkData(data.state, data.action)
    with pytest.raises(DataError, match="frame_index"):
        history_rows(bare, 2)
    with pytest.raises(DataError, match="sample 2 is 3"):
        ChunkData(data.state, data.action, frame_index=np.array([0, 1, 3, 0, 1, 2]))
    cfg = config_for_data("mse", bare, hidden_dim=16, n_obs_steps=2)
    with pytest.raises(DataError, match="n_obs_steps is 2"):
        train(cfg, bare, TrainConfig(steps=1, batch_size=2, device="cpu", progress=False))


@pytest.mark.parametrize("n_obs", [2, 3])
def test_training_batches_carry_each_samples_history(n_obs):
    data = _with_camera(from_episodes(_episodes([5, 4]), horizon=2))
    tensors = _to_tensors(data, torch.device("cpu"), True)
    tensors["obs_rows"] = torch.from_numpy(history_rows(data, n_obs))
    batch = _batch(tensors, 32, torch.Generator().manual_seed(0), torch.device("cpu"), shift=0)
    assert batch["state"].shape == (32, n_obs, 3)
    assert batch["images"]["front"].shape == (32, n_obs, 3, IMG, IMG)
    rows = batch["state"][:, :, 0].long()
    starts = torch.where(rows[:, -1] >= 5, 5, 0)
    want = torch.maximum(rows[:, -1:] - torch.arange(n_obs - 1, -1, -1), starts[:, None])
    assert torch.equal(rows, want)
    assert torch.equal(batch["images"]["front"][:, :, 0, 0, 0].long(), rows)


@pytest.mark.parametrize("family", ["flow", "mse"])
@pytest.mark.parametrize("n_obs", [2, 3])
def test_a_history_goes_through_training_and_sampling(family, n_obs):
    data = _with_camera(from_episodes(_episodes([6, 6]), horizon=4, fps=10.0))
    cfg = config_for_data(family, data, hidden_dim=16, cnn_width=4, n_obs_steps=n_obs,
                          **SMALL[family])
    policy = train(cfg, data, TrainConfig(steps=2, batch_size=4, device="cpu",
                                          progress=False)).policy
    obs = {"state": torch.zeros(2, n_obs, 3),
           "images": {"front": torch.zeros(2, n_obs, 3, IMG, IMG, dtype=torch.uint8)}}
    assert policy.sample(obs, 3).shape == (2, 3, 4, 2)
    state, frame = np.ones((n_obs, 3), np.float32), np.zeros((n_obs, IMG, IMG, 3), np.uint8)
    chunks = policy.predict_chunks(state, {"front": frame}, 3, seed=1)
    assert chunks.shape == (3, 4, 2)
    # one observation stands for a history that has only it (an episode's start)
    single = policy.predict_chunks(state[0], {"front": frame[0]}, 3, seed=1)
    np.testing.assert_array_equal(single, chunks)
    with pytest.raises(ValueError, match=f"n_obs_steps={n_obs}"):
        policy.sample({"state": torch.zeros(2, n_obs + 1, 3), "images": obs["images"]})
    with pytest.raises(ValueError, match=f"expected \\(batch, {n_obs}, 3\\)"):
        policy.sample({"state": torch.zeros(2, 3), "images": obs["images"]})
    with pytest.raises(ValueError, match="image 'front'"):
        policy.sample({"state": obs["state"], "images": {"front": torch.zeros(2, 3, IMG, IMG)}})


def test_families_without_a_history_refuse_one_and_bad_values_are_refused():
    with pytest.raises(ConfigError, match="n_obs_steps must be 1 for a cvae"):
        make_config("cvae", n_obs_steps=2)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ConfigError, match="n_obs_steps"):
            make_config("mse", n_obs_steps=bad)


def _golden_policy(**kw):
    torch.manual_seed(0)
    policy = make_policy(make_config("mse", state_dim=3, action_dim=2, horizon=4, hidden_dim=16,
                                     cameras=["front"], image_shape=[3, 16, 16], cnn_width=4,
                                     **kw))
    policy.set_stats(compute_stats(np.linspace(-1, 1, 30).reshape(10, 3),
                                   np.linspace(-2, 2, 80).reshape(10, 4, 2)))
    return policy


def test_one_step_is_what_it_was_before_the_history(tmp_path):
    """The chunk below was sampled by this policy before n_obs_steps existed; a checkpoint
    without the key loads as one step with the same layers."""
    policy = _golden_policy()
    img = (np.arange(IMG * IMG * 3).reshape(IMG, IMG, 3) % 251).astype(np.uint8)
    before = [[-0.512029, -0.041415], [0.010589, 0.033606], [0.463242, 0.411847],
              [0.452027, -0.00202]]
    out = policy.predict_chunks(np.array([0.1, -0.2, 0.3]), {"front": img})[0]
    np.testing.assert_allclose(out, before, atol=2e-5)
    assert policy.encoder.fuse[0].weight.shape == (16, 32)
    assert _golden_policy(n_obs_steps=3).encoder.fuse[0].weight.shape == (16, 96)
    # (B, 1, S) is the same observation as (B, S)
    obs = {"state": torch.tensor([[0.1, -0.2, 0.3]]),
           "images": {"front": torch.from_numpy(img).permute(2, 0, 1)[None]}}
    stepped = {"state": obs["state"][:, None], "images": {"front": obs["images"]["front"][:, None]}}
    assert torch.equal(policy.sample(obs), policy.sample(stepped))
    save_policy(policy, tmp_path / "p")
    raw = yaml.safe_load((tmp_path / "p" / "config.yaml").read_text())
    assert raw.pop("n_obs_steps") == 1
    (tmp_path / "p" / "config.yaml").write_text(yaml.safe_dump(raw))
    old = load_policy(tmp_path / "p")
    assert old.config.n_obs_steps == 1
    np.testing.assert_array_equal(old.predict_chunks(np.array([0.1, -0.2, 0.3]), {"front": img}),
                                  out[None])


def test_the_history_picks_the_observations_nearest_each_period_back():
    history = ObservationHistory(span_s=1.0)
    for i, stamp in enumerate([10.00, 10.04, 10.11, 10.19, 10.22, 10.30, 10.41]):
        history.add(stamp, {"j": float(i)}, {"cam": np.zeros((2, 2, 3), np.uint8)} if i else {})
    history.add(10.35, {"j": -1.0})  # older than the newest: ignored
    assert len(history) == 7

    def stamps(*args, **kw):
        return [o.stamp for o in history.pick(*args, **kw)]
    assert stamps(10.41, 3, 0.1) == [10.22, 10.30, 10.41]
    assert stamps(10.30, 4, 0.1) == [10.00, 10.11, 10.19, 10.30]  # 10.19 is the nearer to 10.20
    assert stamps(10.04, 3, 0.1) == [10.00, 10.00, 10.04]  # short: the earliest repeats
    assert stamps(10.11, 3, 0.1, cameras=["cam"]) == [10.04, 10.04, 10.11]  # the first has none
    assert stamps(10.11, 2, 0.1, joints=["k"]) == []
    history.add(11.5, {"j": 9.0})  # keeps only the last span_s seconds
    assert stamps(11.5, 3, 0.1) == [11.5] * 3
    history.reset()
    assert len(history) == 0 and history.pick(11.5, 2, 0.1) == []


def test_the_planner_gives_a_history_policy_observations_one_period_apart(monkeypatch):
    policy = make_policy(make_config("mse", state_dim=3, action_dim=3, hidden_dim=16, fps=10.0,
                                     n_obs_steps=3, joint_names=["a", "b", "c"]))
    holder = PolicyHolder("cpu")
    assert holder.install(Candidate(1, "p", policy))
    seen = []
    monkeypatch.setattr(policy, "predict_chunks",
                        lambda state, *a, **k: seen.append(state) or np.zeros((1, 4, 2)))

    def positions(x):
        return {"a": x, "b": 0.0, "c": 0.0}
    for k in range(6):  # joint states at 40 Hz
        holder.observe(1.0 + 0.025 * k, positions(float(k)), None)
    holder.sample(positions(6.0), None, 1, stamp=1.15)
    # nearest 0.95 (none earlier: the first), 1.05, and this one at 1.15
    assert seen[-1].shape == (3, 3) and seen[-1][:, 0].tolist() == [0.0, 2.0, 6.0]
    holder.history.reset()  # a new episode
    holder.sample(positions(7.0), None, 1, stamp=2.0)
    assert seen[-1][:, 0].tolist() == [7.0, 7.0, 7.0]
    holder.sample(positions(8.0), None, 1)  # no stamp: this observation, repeated by the policy
    assert seen[-1].shape == (3,)


def _velocity_episodes(count, seed, length=12):
    """The arm keeps moving at its own velocity: the next states continue the last step, which
    one observation cannot tell."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        velocity = rng.uniform(-0.3, 0.3, 2)
        state = rng.uniform(-0.5, 0.5, 2) + np.arange(length)[:, None] * velocity
        out.append((state, state + velocity))
    return out


def _velocity_error(data, n_obs):
    cfg = config_for_data("mse", data, hidden_dim=64, n_obs_steps=n_obs)
    policy = train(cfg, data, TrainConfig(steps=300, batch_size=64, lr=3e-3, warmup_steps=10,
                                          device="cpu", progress=False)).policy
    err = []
    for state, action in _velocity_episodes(10, 1):
        for t in range(1, len(state) - 4):
            obs = state[t - n_obs + 1:t + 1] if n_obs > 1 else state[t]
            err.append(np.abs(policy.predict_chunks(obs)[0] - action[t:t + 4]).mean())
    return float(np.mean(err))


def test_a_history_learns_what_one_observation_cannot():
    data = from_episodes(_velocity_episodes(200, 0), horizon=4, fps=10.0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small nets: one thread is faster on a shared host
    try:
        errors = {n_obs: _velocity_error(data, n_obs) for n_obs in (1, 2)}
    finally:
        torch.set_num_threads(threads)
    assert errors[2] < 0.5 * errors[1], errors


def test_the_planner_node_feeds_a_history_policy_its_stamped_observations(ros, tmp_path):
    """Joint states at 50 Hz, a policy at 10 Hz with two steps planned at 5 Hz: the older step it
    is given is the state published nearest 0.1 s before the one it plans on."""
    rclpy = pytest.importorskip("rclpy")
    from rclpy.parameter import Parameter
    from sensor_msgs.msg import JointState
    from trajectory_msgs.msg import JointTrajectory

    from genpol import robot
    from genpol.nodes.messages import stamp_s
    from genpol.nodes.planner import PlannerNode
    from ros_helpers import TopicCollector, spinning, wait_for

    home = np.array([0.0, -0.5, 0.5, 0.2, 0.0, 0.3])
    rng = np.random.default_rng(0)
    states = home + 0.05 * rng.standard_normal((20, 6))
    data = from_episodes([(states, states)], horizon=4, fps=10.0,
                         joint_names=list(robot.JOINT_NAMES))
    cfg = config_for_data("mse", data, hidden_dim=16, n_obs_steps=2)
    train(cfg, data, TrainConfig(steps=3, batch_size=8, device="cpu", progress=False),
          out_dir=tmp_path / "p")
    node = PlannerNode(parameter_overrides=[
        Parameter("policy_path", value=str(tmp_path / "p")), Parameter("num_samples", value=1),
        Parameter("inference_rate_hz", value=5.0),  # plans 0.2 s apart: the states in between
        Parameter("cpu_threads", value=0), Parameter("camera_topics", value=["none=/unused"])])
    probe = rclpy.create_node("probe")
    chunks = TopicCollector(probe, JointTrajectory, "/genpol/action_chunk")
    state_pub = probe.create_publisher(JointState, "/joint_states", 10)
    sent: list[float] = []
    given: list[np.ndarray] = []

    def publish_state():
        msg = JointState(name=list(robot.JOINT_NAMES), position=[float(v) for v in home])
        msg.header.stamp = probe.get_clock().now().to_msg()
        sent.append(stamp_s(msg.header.stamp))
        msg.position[0] = sent[-1] - sent[0]  # each state says when it was published
        state_pub.publish(msg)

    with spinning(node, probe):
        assert wait_for(lambda: node.holder.policy is not None, timeout=10)
        policy = node.holder.policy
        plain = policy.predict_chunks

        def recording(state, *args, **kwargs):
            given.append(np.array(state))
            return plain(state, *args, **kwargs)
        policy.predict_chunks = recording
        probe.create_timer(0.02, publish_state)
        assert chunks.wait(6, timeout=10)
    offsets = np.array(sent) - sent[0]
    assert all(g.shape == (2, 6) for g in given)
    for older, newest in ((g[0, 0], g[1, 0]) for g in given):
        want = offsets[np.argmin(np.abs(offsets - (newest - 0.1)))]  # the earliest, when short
        assert older == pytest.approx(want, abs=1e-6), (older, newest)
    assert any(g[1, 0] - g[0, 0] > 0.09 for g in given)
