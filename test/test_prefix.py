"""Continuing a committed prefix (real-time chunking): guidance for flow and diffusion, forced
tokens for binned, a clear refusal for the families that keep their mode by selection."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from genpol.control.timeline import Prefix
from genpol.data.arrays import ChunkData
from genpol.policies import make_config, make_policy
from genpol.train import TrainConfig, config_for_data, train

H = 8
STATE = np.array([0.2, -0.3], np.float32)
STEP = np.arange(H)[:, None] / H


def two_ramps(n: int = 256) -> ChunkData:
    """From any state the chunk ramps one way or the other, with equal odds: the observation
    never tells the mode, so only the prefix can."""
    rng = np.random.default_rng(0)
    state = rng.uniform(-1, 1, (n, 2)).astype(np.float32)
    sign = rng.choice([-1.0, 1.0], n)[:, None, None]
    action = (state[:, None, :] + sign * STEP[None] * np.array([1.0, -0.5])).astype(np.float32)
    return ChunkData(state, action, joint_names=["a", "b"], fps=10.0)


def trained(family: str, steps: int, **overrides):
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        data = two_ramps()
        cfg = config_for_data(family, data, **overrides)
        return train(cfg, data, TrainConfig(steps=steps, batch_size=64, lr=3e-3, device="cpu",
                                            progress=False)).policy
    finally:
        torch.set_num_threads(threads)


UP = STATE + STEP * np.array([1.0, -0.5])  # the "+" ramp from STATE


def prefix_error(chunks: np.ndarray, committed: int) -> np.ndarray:
    return np.abs(chunks[:, :committed] - UP[:committed]).max(axis=(1, 2))


@pytest.mark.parametrize("family", ["flow", "diffusion"])
def test_guided_samples_land_on_the_committed_steps(family, monkeypatch):
    policy = trained(family, 300, hidden_dim=32, down_dims=[16, 32], n_groups=4)
    policy.eval()
    prefix = Prefix(UP.copy(), committed=3, overlap=6)
    free = policy.predict_chunks(STATE, None, 32, seed=1)
    guided = policy.predict_chunks(STATE, None, 32, seed=1, prefix=prefix)
    e_free, e_guided = prefix_error(free, 3), prefix_error(guided, 3)
    # unguided, half the samples take the other ramp (0.3 apart at step 2)
    assert np.median(e_free) > 0.1, e_free
    # the sampler itself lands on the committed steps (to float precision; guidance alone
    # brought a net this small only part of the way, e.g. a median error 0.6x the free one)
    assert e_guided.max() < 1e-4, e_guided
    # what the planner plays: the committed steps exactly, the overlap faded into the sample
    continued = prefix.continue_into(guided)
    np.testing.assert_allclose(continued[:, :3], np.broadcast_to(UP[:3], (32, 3, 2)), atol=1e-5)
    np.testing.assert_allclose(continued[:, 6:], guided[:, 6:])
    # the same seed with no prefix (or a prefix with nothing committed) samples as before
    nothing = Prefix(UP.copy(), committed=0, overlap=0)
    np.testing.assert_allclose(policy.predict_chunks(STATE, None, 32, seed=1, prefix=nothing),
                               free)
    # max_guidance 0 (the planner's default): inpainting alone, with no backward pass at all,
    # still lands every sample on the committed steps
    def no_backward(*args, **kwargs):
        raise AssertionError("max_guidance 0 must not take a gradient")
    monkeypatch.setattr(torch.autograd, "grad", no_backward)
    inpainted = policy.predict_chunks(STATE, None, 32, seed=1,
                                      prefix=Prefix(UP.copy(), committed=3, overlap=6,
                                                    max_guidance=0.0))
    assert prefix_error(inpainted, 3).max() < 1e-4
    with pytest.raises(AssertionError, match="must not take a gradient"):  # the patch is live
        policy.predict_chunks(STATE, None, 2, seed=1, prefix=prefix)


@pytest.mark.parametrize("inpaint", ["committed", "overlap"])
def test_the_guidance_step_pulls_the_overlap_by_its_weights_and_pins_the_committed_steps(inpaint):
    """prefix_guide on a net whose denoised estimate is x itself (identity Jacobian): the
    steered estimate is x + (1 - tau) w W (Y - x), the paper's rule, with w = min(max_guidance,
    (1 - tau) / (tau r^2)); the committed steps are the prefix exactly, and with inpaint
    "overlap" the overlap is also blended with the prefix by the weights W."""
    from genpol.policies.base import PrefixTarget
    from genpol.policies.denoising import prefix_guide

    h, a, tau = 6, 2, 0.4
    target = torch.ones(h, a)
    weights = torch.tensor([1.0, 1.0, 0.6, 0.3, 0.0, 0.0])
    prefix = PrefixTarget(target, weights, committed=2, max_guidance=5.0, inpaint=inpaint)
    guide = prefix_guide(prefix, lambda t: (tau, 1.0),
                         denoised=lambda x, t, out: out,   # the estimate is the output...
                         output_for=lambda x, t, x1: x1)   # ...and the output is the estimate
    x = torch.zeros(3, h, a)
    steered = guide(lambda z: z * 1.0, x, 0)               # ...and the net returns x
    r2 = (1 - tau) ** 2 / (tau ** 2 + (1 - tau) ** 2)
    w = min(5.0, (1 - tau) / (tau * r2))
    expected = (1 - tau) * w * weights[:, None] * (target - x)
    if inpaint == "overlap":
        expected = weights[:, None] * target + (1 - weights[:, None]) * expected
    expected[:, :2] = target[:2]
    torch.testing.assert_close(steered, expected.expand(3, h, a))


def test_binned_plays_the_prefix_exactly_and_continues_it():
    policy = trained("binned", 150, hidden_dim=32)
    prefix = Prefix(UP.copy(), committed=3, overlap=6)
    chunks = policy.predict_chunks(STATE, None, 16, seed=1, prefix=prefix)
    assert chunks.shape == (16, H, 2)
    np.testing.assert_allclose(chunks[:, :3], np.broadcast_to(UP[:3], (16, 3, 2)), atol=1e-6)
    assert np.isfinite(chunks).all()


@pytest.mark.parametrize("family", ["cvae", "gmm", "gaussian", "mse"])
def test_selection_families_refuse_a_prefix_and_name_the_fallback(family):
    policy = make_policy(make_config(family, state_dim=2, action_dim=2, horizon=H))
    with pytest.raises(ValueError, match="chunking: select"):
        policy.predict_chunks(STATE, None, 2, prefix=Prefix(UP.copy(), 3, 6))


def test_a_bad_prefix_is_refused_by_shape_and_value():
    with pytest.raises(ValueError, match="inpaint must be one of"):
        Prefix(UP.copy(), 3, 6, inpaint="everything")
    policy = make_policy(make_config("flow", state_dim=2, action_dim=2, horizon=H,
                                     hidden_dim=32, down_dims=[16, 32], n_groups=4))
    with pytest.raises(ValueError, match="prefix actions have shape"):
        policy.predict_chunks(STATE, None, 2, prefix=Prefix(np.zeros((H, 3)), 3, 6))
    bad = UP.copy()
    bad[1, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        policy.predict_chunks(STATE, None, 2, prefix=Prefix(bad, 3, 6))
