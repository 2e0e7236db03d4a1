"""Diffusion and flow families: shapes, config refusals, seeding, a tiny overfit that can fail."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers.schedulers import DDIMScheduler, DDPMScheduler

from genpol.policies import make_config, make_policy
from genpol.policies.config import ConfigError
from genpol.policies.diffusion import DiffusionConfig, DiffusionPolicy
from genpol.policies.flow import FlowConfig, FlowPolicy
from genpol.policies.nets.unet1d import UNet1D

FAMILIES = {"diffusion": (DiffusionConfig, DiffusionPolicy), "flow": (FlowConfig, FlowPolicy)}
# Three U-Net levels: the horizon is padded to a multiple of 4, so H = 1 and H = 10 need padding.
TINY = dict(state_dim=3, action_dim=2, hidden_dim=32, down_dims=[8, 16, 32], n_groups=4,
            transformer_layers=1, transformer_heads=4)


def make(family: str, **overrides) -> torch.nn.Module:
    config_cls, policy_cls = FAMILIES[family]
    torch.manual_seed(0)
    return policy_cls(config_cls(**{**TINY, **overrides}))


def obs(batch: int = 2) -> dict:
    return {"state": torch.linspace(-1, 1, batch * 3).view(batch, 3)}


@pytest.mark.parametrize("horizon", [1, 10, 16])
@pytest.mark.parametrize("net", ["unet", "transformer"])
@pytest.mark.parametrize("family", ["diffusion", "flow"])
def test_shapes_loss_and_range(family, net, horizon):
    steps = {"num_inference_steps": 2} if family == "diffusion" else {"num_steps": 2}
    policy = make(family, net=net, horizon=horizon, **steps)
    batch = {**obs(), "action": torch.rand(2, horizon, 2) * 2 - 1}
    loss, info = policy.compute_loss(batch)
    assert loss.ndim == 0 and torch.isfinite(loss) and info
    loss.backward()
    samples = policy.sample(obs(), num_samples=3)
    assert samples.shape == (2, 3, horizon, 2)
    assert torch.isfinite(samples).all()
    assert samples.abs().max() <= 1 + 1e-4  # clip_sample keeps normalised actions in [-1, 1]


def test_unet_pads_any_horizon():
    net = UNet1D(action_dim=3, cond_dim=5, down_dims=[8, 16, 32, 64], n_groups=4)
    for horizon in (1, 3, 7, 9, 16):
        out = net(torch.randn(2, horizon, 3), torch.tensor([0.0, 99.0]), torch.randn(2, 5))
        assert out.shape == (2, horizon, 3)


def test_flow_beta_time_sampling_trains():
    policy = make("flow", horizon=4, time_sampling="beta")
    t = policy._sample_time(10_000, torch.device("cpu"))
    assert t.min() >= 0 and t.max() < 1
    assert t.mean() < 0.5  # Beta(1.5, 1) flipped: mean 0.4, weighted toward the noisy end
    loss, _ = policy.compute_loss({**obs(), "action": torch.zeros(2, 4, 2)})
    assert torch.isfinite(loss)


@pytest.mark.parametrize("config_cls, values, field", [
    (DiffusionConfig, {"num_inference_steps": 0}, "num_inference_steps"),
    (DiffusionConfig, {"num_train_timesteps": -5}, "num_train_timesteps"),
    (DiffusionConfig, {"num_train_timesteps": 10, "num_inference_steps": 20},
     "num_inference_steps"),
    (DiffusionConfig, {"sampler": "euler"}, "sampler"),
    (DiffusionConfig, {"beta_schedule": "cosine"}, "beta_schedule"),
    (DiffusionConfig, {"timestep_spacing": "even"}, "timestep_spacing"),
    (DiffusionConfig, {"net": "rnn"}, "net"),
    (DiffusionConfig, {"down_dims": []}, "down_dims"),
    (DiffusionConfig, {"down_dims": [64, 0]}, "down_dims"),
    (DiffusionConfig, {"down_dims": [12, 24], "n_groups": 8}, "n_groups"),
    (DiffusionConfig, {"kernel_size": 4}, "kernel_size"),
    (DiffusionConfig, {"clip_sample": "yes"}, "clip_sample"),
    (FlowConfig, {"num_steps": 0}, "num_steps"),
    (FlowConfig, {"num_steps": 2.5}, "num_steps"),
    (FlowConfig, {"time_sampling": "logit"}, "time_sampling"),
    (FlowConfig, {"net": "transformer", "hidden_dim": 30, "transformer_heads": 4}, "hidden_dim"),
])
def test_config_refusals(config_cls, values, field):
    with pytest.raises(ConfigError, match=field):
        config_cls(**values)


@pytest.mark.parametrize("family, options", [
    ("diffusion", {"sampler": "ddim"}), ("diffusion", {"sampler": "ddpm"}),
    ("flow", {}), ("flow", {"net": "transformer"})])
def test_seeded_sampling(family, options):
    steps = {"num_inference_steps": 3} if family == "diffusion" else {"num_steps": 3}
    policy = make(family, horizon=6, **options, **steps)

    def draw(seed):
        return policy.sample(obs(), 4, torch.Generator().manual_seed(seed))

    first = draw(0)
    assert torch.equal(first, draw(0))  # a second call is unaffected by the first
    assert not torch.allclose(first, draw(1))
    assert not torch.allclose(first[:, 0], first[:, 1])  # the N chunks differ from each other
    assert policy.sample(obs(), 2).shape == (2, 2, 6, 2)  # no generator: global RNG


def reference_chunks(policy, observation, noise, generator=None) -> torch.Tensor:
    """The two sampling loops as written out by hand: flow x += dt * v at t = i * dt (times the
    net's time scale 1000); diffusion through a diffusers scheduler's own step."""
    cfg = policy.config
    policy.eval()
    with torch.no_grad():
        o = policy._prepare_obs(observation)
        n = noise.shape[0] // o["state"].shape[0]
        cond = policy.encoder(o).repeat_interleave(n, dim=0)
        x, m = noise.clone(), noise.shape[0]
        if cfg.family == "flow":
            dt = 1.0 / cfg.num_steps
            for i in range(cfg.num_steps):
                x = x + dt * policy.net(x, torch.full((m,), i * dt * 1000.0), cond)
            if cfg.clip_sample:
                x = x.clamp(-1.0, 1.0)
        else:
            cls = DDIMScheduler if cfg.sampler == "ddim" else DDPMScheduler
            scheduler = cls(num_train_timesteps=cfg.num_train_timesteps,
                            beta_schedule=cfg.beta_schedule, clip_sample=cfg.clip_sample,
                            prediction_type="epsilon", timestep_spacing=cfg.timestep_spacing)
            scheduler.set_timesteps(cfg.num_inference_steps)
            kwargs = {"generator": generator} if cfg.sampler == "ddpm" else {"eta": 0.0}
            for t in scheduler.timesteps:
                eps = policy.net(x, torch.full((m,), float(t)), cond)
                x = scheduler.step(eps, int(t), x, **kwargs).prev_sample
        chunks = x.view(-1, n, cfg.horizon, cfg.action_dim)
        return policy.normalizer.unnormalize_action(chunks)


@pytest.mark.parametrize("family, options", [
    ("flow", {}), ("flow", {"clip_sample": False}), ("flow", {"net": "transformer"}),
    ("diffusion", {"sampler": "ddim"}), ("diffusion", {"sampler": "ddpm"})])
def test_the_sampling_loop_matches_a_hand_written_reference(family, options):
    policy = make(family, horizon=6, **options)
    policy.set_stats({"state_mean": np.zeros(3), "state_std": np.ones(3),
                      "action_min": np.array([-3.0, 0.0]), "action_max": np.array([1.0, 0.5])})
    noise = torch.randn(2 * 4, 6, 2, generator=torch.Generator().manual_seed(5))
    got = policy.sample(obs(), 4, torch.Generator().manual_seed(9), noise=noise)
    assert torch.equal(got, reference_chunks(policy, obs(), noise,
                                             torch.Generator().manual_seed(9)))
    # Without injected noise, the policy draws it first from the same generator: same as before.
    g = torch.Generator().manual_seed(9)
    drawn = torch.randn(2 * 4, 6, 2, generator=g)
    assert torch.equal(policy.sample(obs(), 4, torch.Generator().manual_seed(9)),
                       reference_chunks(policy, obs(), drawn, g))


@pytest.mark.parametrize("family", ["diffusion", "flow"])
def test_injected_noise_is_used(family):
    policy = make(family, horizon=6)
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(4, 6, 2, generator=g), torch.randn(4, 6, 2, generator=g)
    first = policy.sample(obs(), 4, torch.Generator().manual_seed(1), noise=a.repeat(2, 1, 1))
    assert torch.equal(first, policy.sample(obs(), 4, torch.Generator().manual_seed(2),
                                            noise=a.repeat(2, 1, 1)))
    assert torch.equal(first, policy.sample(obs(), 4, noise=a))  # (N, H, A): every observation
    assert not torch.allclose(first, policy.sample(obs(), 4, noise=b))
    np.testing.assert_array_equal(policy.predict_chunks(np.zeros(3), num_samples=4, noise=a),
                                  policy.predict_chunks(np.zeros(3), num_samples=4,
                                                        noise=a.numpy(), seed=3))
    with pytest.raises(ValueError, match=r"noise has shape \(3, 6, 2\), expected \(8, 6, 2\)"):
        policy.sample(obs(), 4, noise=torch.zeros(3, 6, 2))


def test_noise_is_refused_where_a_family_takes_none():
    policy = make_policy(make_config("mse", state_dim=3, horizon=6, hidden_dim=16))
    with pytest.raises(ValueError, match="mse policy starts from no noise"):
        policy.sample(obs(), 4, noise=torch.zeros(4, 6, 2))


SINGLE_OBS = {"state": torch.tensor([[0.5, -0.5, 0.0]])}


def _target(horizon: int) -> torch.Tensor:
    return torch.stack([torch.linspace(-0.8, 0.8, horizon),
                        0.6 * torch.sin(torch.linspace(0, 3, horizon))], dim=-1)


def _error(policy) -> float:
    """Mean absolute distance of 8 seeded samples from the single training chunk."""
    samples = policy.sample(SINGLE_OBS, 8, torch.Generator().manual_seed(1))
    return (samples - _target(policy.config.horizon)).abs().mean().item()


def _train_on_single_pair(policy, steps: int = 150) -> None:
    target = _target(policy.config.horizon)
    batch = {"state": SINGLE_OBS["state"].expand(64, -1), "action": target.expand(64, -1, -1)}
    opt = torch.optim.AdamW(policy.parameters(), lr=3e-3)
    for _ in range(steps):
        loss, _ = policy.compute_loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()


# Measured after 150 steps (4 seeds): DDIM 0.04-0.08, DDPM 0.03-0.04, flow 0.02-0.03 mean abs
# error; untrained ~0.65.
@pytest.mark.parametrize("family", ["diffusion", "flow"])
def test_overfits_single_pair(family):
    policy = make(family, horizon=8, down_dims=[32], n_groups=8)
    before = _error(policy)
    assert before > 0.4, "untrained samples already match: the check would prove nothing"
    _train_on_single_pair(policy)
    after = _error(policy)
    assert after < 0.2, f"samples after training are {after:.3f} from the only chunk seen"
    if family == "diffusion":  # the same weights must work with the stochastic sampler too
        ddpm = make(family, horizon=8, down_dims=[32], n_groups=8, sampler="ddpm")
        ddpm.load_state_dict(policy.state_dict())
        assert _error(ddpm) < 0.2


@pytest.mark.parametrize("family", ["diffusion", "flow"])
def test_sampling_steps_can_be_set_per_call(family, monkeypatch):
    import genpol.policies.denoising as denoising

    policy = make(family, horizon=8)
    seen = []
    real = denoising.denoise

    def counting(net, cond, x, scheduler, num_steps, guide=None):
        seen.append(num_steps)
        return real(net, cond, x, scheduler, num_steps, guide)

    monkeypatch.setattr(denoising, "denoise", counting)
    out = policy.predict_chunks(np.zeros(3, np.float32), None, 2, seed=0, steps=3)
    assert out.shape == (2, 8, 2) and np.isfinite(out).all()
    policy.predict_chunks(np.zeros(3, np.float32), None, 2, seed=0)
    assert seen == [3, policy.config.sampling_steps]
    with pytest.raises(ValueError, match="positive integer"):
        policy.predict_chunks(np.zeros(3, np.float32), None, 2, steps=0)


def test_families_without_denoising_steps_refuse_them():
    policy = make_policy(make_config("mse", state_dim=3, action_dim=2, horizon=4))
    with pytest.raises(ValueError, match="no denoising steps"):
        policy.predict_chunks(np.zeros(3, np.float32), None, 1, steps=5)
