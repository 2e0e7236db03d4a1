"""CVAE (ACT-style) and binned autoregressive families: shapes, refusals, gradients, overfitting."""

from __future__ import annotations

import math

import pytest
import torch

from genpol.policies.binned import BinnedConfig, BinnedPolicy, from_bins, to_bins
from genpol.policies.config import ConfigError
from genpol.policies.cvae import CVAEConfig, CVAEPolicy

CAMERA = {"cameras": ["front"], "image_shape": [3, 32, 32], "image_encoder": "cnn"}
SMALL = {
    "cvae": dict(hidden_dim=32, n_heads=4, latent_dim=8, enc_layers=1, dec_layers=1,
                 vae_enc_layers=1, dim_feedforward=64),
    "binned": dict(hidden_dim=32, n_bins=16, rnn_layers=2),
}
FAMILIES = {"cvae": (CVAEConfig, CVAEPolicy), "binned": (BinnedConfig, BinnedPolicy)}


def make(family: str, **overrides):
    config_cls, policy_cls = FAMILIES[family]
    return policy_cls(config_cls(**{**SMALL[family], **overrides}))


def batch(policy, b: int, with_action: bool = True) -> dict:
    cfg = policy.config
    out = {"state": torch.randn(b, cfg.state_dim)}
    if cfg.cameras:
        out["images"] = {name: torch.rand(b, *cfg.image_shape) for name in cfg.cameras}
    if with_action:
        out["action"] = torch.rand(b, cfg.horizon, cfg.action_dim) * 2 - 1
    return out


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("horizon", [1, 10])
@pytest.mark.parametrize("camera", [False, True])
def test_shapes(family, horizon, camera):
    policy = make(family, horizon=horizon, action_dim=2, **(CAMERA if camera else {}))
    loss, info = policy(batch(policy, 2))
    assert loss.shape == () and torch.isfinite(loss)
    assert all(math.isfinite(v) for v in info.values())
    policy.eval()
    assert policy.sample(batch(policy, 2, with_action=False), 3).shape == (2, 3, horizon, 2)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("camera", [False, True])
def test_every_parameter_gets_a_gradient(family, camera):
    # DDP runs without find_unused_parameters: a parameter left out of the loss would hang it.
    policy = make(family, horizon=4, **(CAMERA if camera else {}))
    loss, _ = policy(batch(policy, 2))
    loss.backward()
    missing = [name for name, p in policy.named_parameters() if p.grad is None]
    assert not missing


@pytest.mark.parametrize("config_cls, values, field", [
    (CVAEConfig, {"beta": -1.0}, "beta"),
    (CVAEConfig, {"latent_dim": 0}, "latent_dim"),
    (CVAEConfig, {"recon_loss": "huber"}, "recon_loss"),
    (CVAEConfig, {"hidden_dim": 30, "n_heads": 8}, "n_heads"),
    (BinnedConfig, {"n_bins": 1}, "n_bins"),
    (BinnedConfig, {"temperature": 0.0}, "temperature"),
    (BinnedConfig, {"temperature": -0.5}, "temperature"),
])
def test_config_refusals(config_cls, values, field):
    with pytest.raises(ConfigError, match=field):
        config_cls(**values)


def test_cvae_prior_zero_is_deterministic_and_sampled_prior_is_not():
    fixed = make("cvae").eval()
    obs = batch(fixed, 2, with_action=False)
    out = fixed.sample(obs, 3)
    assert torch.equal(out[:, 0], out[:, 1]) and torch.equal(out[:, 0], out[:, 2])
    assert not fixed.stochastic

    sampled = make("cvae", sample_prior=True).eval()
    out = sampled.sample(obs, 3)
    assert not torch.allclose(out[:, 0], out[:, 1])
    assert sampled.stochastic


def test_cvae_kl_is_finite_and_nonnegative():
    policy = make("cvae")
    for _ in range(3):
        _, info = policy(batch(policy, 4))
        assert math.isfinite(info["kl"]) and info["kl"] >= 0


def test_bin_round_trip_within_half_a_bin():
    n_bins = 16
    values = torch.cat([torch.linspace(-1, 1, 1001), torch.rand(1000) * 2 - 1])
    back = from_bins(to_bins(values, n_bins), n_bins)
    assert (back - values).abs().max() <= 1.0 / n_bins + 1e-6
    # Values outside [-1, 1] are clipped into the end bins.
    idx = to_bins(torch.tensor([-3.0, 3.0]), n_bins)
    assert idx.tolist() == [0, n_bins - 1]


@pytest.mark.parametrize("family, extra", [("binned", {}), ("cvae", {"sample_prior": True})])
def test_same_seed_same_samples(family, extra):
    policy = make(family, horizon=5, **extra).eval()
    obs = batch(policy, 2, with_action=False)
    first = policy.sample(obs, 4, torch.Generator().manual_seed(7))
    again = policy.sample(obs, 4, torch.Generator().manual_seed(7))
    other = policy.sample(obs, 4, torch.Generator().manual_seed(8))
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def _overfit(policy, steps: int, lr: float):
    h = policy.config.horizon
    t = torch.linspace(0, 1, h)
    chunk = torch.stack([0.8 * torch.sin(2 * math.pi * t),
                         0.6 * torch.cos(2 * math.pi * t) - 0.2], dim=-1).unsqueeze(0)
    obs = {"state": torch.tensor([[0.3, -0.5]])}
    opt = torch.optim.Adam(policy.parameters(), lr=lr)
    for _ in range(steps):
        loss, _ = policy({**obs, "action": chunk})
        opt.zero_grad()
        loss.backward()
        opt.step()
    policy.eval()
    samples = policy.sample(obs, 8, torch.Generator().manual_seed(0))
    return (samples - chunk.unsqueeze(1)).abs()


def test_cvae_overfits_one_chunk():
    # An untrained decoder is off by 0.6-1.0 (max) on this curve; trained, about 0.03-0.07.
    err = _overfit(make("cvae", horizon=8, hidden_dim=64, dropout=0.0), steps=300, lr=2e-3)
    assert err.max() < 0.15, f"max error {err.max():.3f}"
    assert err.mean() < 0.06, f"mean error {err.mean():.3f}"


def test_binned_overfits_one_chunk():
    # Decoding can only reach the bin centre, so "right" means within half a bin (1/16 here);
    # a rare wrong draw at temperature 1 is allowed, a wrong mode is not.
    err = _overfit(make("binned", horizon=8, hidden_dim=64, rnn_layers=1), steps=200, lr=3e-3)
    assert (err <= 1.0 / 16 + 1e-5).float().mean() >= 0.95
    assert err.mean() < 0.06, f"mean error {err.mean():.3f}"
