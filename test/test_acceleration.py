"""Sampling on the hardware: inference mode (not for guidance), bf16 autocast, compile refused
off CUDA, the observation encoded once, and the planner's warm-up at install."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from genpol import robot
from genpol.control.timeline import Prefix
from genpol.planning import PolicyHolder
from genpol.policies import families, make_config, make_policy, save_policy
from genpol.policies.acceleration import accelerate, autocast_dtype, set_threads
from genpol.policies.base import Policy
from genpol.policies.nets.observation import ObservationEncoder

JOINTS = list(robot.JOINT_NAMES)
SMALL = {"hidden_dim": 32, "horizon": 8}
FAMILY_SMALL = {"cvae": {"dim_feedforward": 64, "enc_layers": 1, "vae_enc_layers": 1},
                "flow": {"down_dims": [16, 32]}, "diffusion": {"down_dims": [16, 32]}}


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread: on a busy 2-core host two threads per call fight and run 20x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def small_policy(family: str, **extra) -> Policy:
    torch.manual_seed(0)
    cfg = make_config(family, state_dim=6, action_dim=6, joint_names=JOINTS,
                      **SMALL, **FAMILY_SMALL.get(family, {}), **extra)
    policy = make_policy(cfg).eval()
    # actions well inside every joint's limits, so vetting's dry run passes untrained weights
    policy.set_stats({"state_mean": np.zeros(6), "state_std": np.ones(6),
                      "action_min": np.full(6, 0.1), "action_max": np.full(6, 0.5)})
    return policy


def obs(policy: Policy, batch: int = 2) -> dict:
    g = torch.Generator().manual_seed(1)
    out: dict = {"state": torch.randn(batch, 6, generator=g)}
    if policy.config.cameras:
        _, h, w = policy.config.image_shape
        out["images"] = {c: torch.randint(0, 256, (batch, 3, h, w), dtype=torch.uint8,
                                          generator=g) for c in policy.config.cameras}
    return out


def prefix(policy: Policy) -> Prefix:
    return Prefix(np.full((8, 6), 0.3, dtype=np.float32), committed=2, overlap=4)


def spy_modes(policy: Policy) -> list[tuple[bool, bool]]:
    """(inference mode, grad mode) at each entry to the policy's _sample."""
    seen: list[tuple[bool, bool]] = []
    inner = policy._sample

    def spy(*args, **kwargs):
        seen.append((torch.is_inference_mode_enabled(), torch.is_grad_enabled()))
        return inner(*args, **kwargs)

    policy._sample = spy  # type: ignore[method-assign]
    return seen


@pytest.mark.parametrize("family", families())
def test_sampling_runs_in_inference_mode_and_gives_the_same_chunks(family):
    policy = small_policy(family)
    o = obs(policy)
    with torch.no_grad():  # the path before inference mode, on the same seed
        ref = policy._sample(policy._prepare_obs(o), 4, torch.Generator().manual_seed(3))
        ref = policy.normalizer.unnormalize_action(ref)
    seen = spy_modes(policy)
    chunks = policy.sample(o, 4, torch.Generator().manual_seed(3))
    assert seen == [(True, False)]
    assert torch.equal(chunks, ref)
    # what the caller gets is an ordinary tensor: it may be changed in place
    assert not chunks.is_inference() and chunks.dtype == torch.float32
    chunks += 1.0


@pytest.mark.parametrize("family", ["flow", "diffusion"])
def test_guided_sampling_keeps_autograd(family):
    policy = small_policy(family)
    seen = spy_modes(policy)
    state = np.zeros(6, dtype=np.float32)
    free = policy.predict_chunks(state, None, 4, seed=0)
    guided = policy.predict_chunks(state, None, 4, seed=0, prefix=prefix(policy))
    assert seen == [(True, False), (False, False)]  # no_grad; the guide enables grad itself
    # the guide ran (test_prefix.py shows on trained policies that it pulls to the prefix)
    assert np.isfinite(guided).all() and not np.allclose(guided, free)


@pytest.mark.parametrize("family", ["cvae", "flow", "binned"])
def test_bf16_autocast_returns_float32_chunks_near_the_float32_ones(family):
    policy = small_policy(family)
    o = obs(policy)
    exact = policy.sample(o, 3, torch.Generator().manual_seed(0))
    accelerate(policy, precision="bfloat16")
    seen: list[bool] = []
    inner = policy._sample
    policy._sample = lambda *a, **k: seen.append(torch.is_autocast_enabled("cpu")) or inner(
        *a, **k)  # type: ignore[method-assign]
    cast = policy.sample(o, 3, torch.Generator().manual_seed(0))
    assert seen == [True] and cast.dtype == torch.float32
    assert torch.isfinite(cast).all()
    if family != "binned":  # a token one bin off is a different sample, not a rounding error
        assert (cast - exact).abs().max() < 0.05  # the action range is 0.4 wide
    if policy.prefix_method == "guidance":  # autograd through bf16 works too
        assert np.isfinite(policy.predict_chunks(np.zeros(6), None, 2, seed=0,
                                                 prefix=prefix(policy))).all()


def test_unknown_precision_and_compile_off_cuda_are_refused():
    with pytest.raises(ValueError, match="precision must be one of"):
        autocast_dtype("float16", "cpu")
    with pytest.raises(ValueError, match="compile is for CUDA devices"):
        PolicyHolder("cpu", compile=True)
    with pytest.raises(ValueError, match="compile is for CUDA devices"):
        accelerate(small_policy("mse"), compile=True)
    with pytest.raises(ValueError, match="threads must be"):
        set_threads(-1)


@pytest.mark.parametrize("family", families())
def test_the_observation_is_encoded_once_for_all_samples(family):
    policy = small_policy(family, cameras=["front"], image_shape=[3, 32, 32])
    batches: list[int] = []
    for module in policy.modules():
        if isinstance(module, ObservationEncoder):
            module.register_forward_hook(lambda m, args, out: batches.append(len(out)))
    policy.sample(obs(policy, batch=2), 8)
    assert batches == [2]  # one pass over the 2 observations, not 2 x 8 samples


def checkpoint(tmp_path, family: str) -> str:
    path = tmp_path / family
    save_policy(small_policy(family), path)
    return str(path)


def count_sample_calls(monkeypatch) -> list[tuple[int, bool]]:
    """(num_samples, with a prefix) of every Policy.sample call from now on."""
    calls: list[tuple[int, bool]] = []
    inner = Policy.sample

    def spy(self, o, num_samples=1, *args, **kwargs):
        calls.append((num_samples, kwargs.get("prefix") is not None))
        return inner(self, o, num_samples, *args, **kwargs)

    monkeypatch.setattr(Policy, "sample", spy)
    return calls


def test_install_warms_up_at_the_planners_samples(tmp_path, monkeypatch):
    flow, mse = checkpoint(tmp_path, "flow"), checkpoint(tmp_path, "mse")
    calls = count_sample_calls(monkeypatch)
    PolicyHolder("cpu", warm_samples=0).load(flow)
    assert calls == [(2, False)]  # vetting's dry run only
    calls.clear()
    samples = 5
    holder = PolicyHolder("cpu", warm_samples=lambda: samples)
    holder.load(flow)  # vetted: dry run, then one call at 5, and one guided (its first backward)
    assert calls == [(2, False), (5, False), (5, True)]
    calls.clear()
    samples = 2  # vetting's dry run drew as many: not drawn again
    holder.load(flow)
    assert calls == [(2, False), (2, True)]
    calls.clear()
    done = threading.Event()
    holder.warm_samples = 7
    holder.load_in_background(mse, lambda path, error: done.set())  # not vetted: warmed anyway
    assert done.wait(30)
    assert calls == [(7, False)] and holder.path == mse
    holder.sample({j: 0.0 for j in JOINTS}, None, 7)
    assert calls == [(7, False), (7, False)]
