"""The U-Net's standard layout (Diffusion Policy's up path), the legacy one old checkpoints keep,
prediction_type, and the step-embedding width."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from genpol.control.timeline import Prefix
from genpol.bench.unet_reference import ReferenceUNet1D, compare_layouts
from genpol.policies import load_policy, make_config, make_policy, save_policy
from genpol.policies.config import ConfigError
from genpol.policies.diffusion import DiffusionConfig
from genpol.policies.normalize import compute_stats
from genpol.policies.nets.unet1d import CondResBlock, Conv1d, ConvTranspose1d, UNet1D
from genpol.policies.vetting import vet

SMALL = dict(state_dim=3, action_dim=2, horizon=6, hidden_dim=32, down_dims=[8, 16, 32],
             n_groups=4)


def count(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


@pytest.mark.parametrize("down_dims", [[16], [8, 16, 32], [8, 16, 32, 64]])
@pytest.mark.parametrize("action_dim", [1, 6])
def test_standard_layout_keeps_any_horizon(down_dims, action_dim):
    torch.manual_seed(0)
    net = UNet1D(action_dim, 5, down_dims, n_groups=4)
    for horizon in (1, 7, 16):
        x = torch.randn(2, horizon, action_dim)
        out = net(x, torch.tensor([0.0, 99.0]), torch.randn(2, 5))
        assert out.shape == x.shape and torch.isfinite(out).all()


def test_standard_layout_is_diffusion_policys_unet():
    """Same parameters in the same order as the benchmark's independent reference, and with its
    weights copied over the same function; the legacy layout is bigger."""
    dims = [16, 32, 64]
    torch.manual_seed(0)
    ours = UNet1D(3, 10, dims, kernel_size=5, n_groups=8, time_dim=32)
    reference = ReferenceUNet1D(3, 10, dims, kernel_size=5, n_groups=8, step_embed_dim=32)
    pairs = list(zip(ours.parameters(), reference.parameters(), strict=True))
    assert [a.shape for a, _ in pairs] == [b.shape for _, b in pairs]
    with torch.no_grad():
        for a, b in pairs:
            b.copy_(a)
    x, t, c = torch.randn(2, 16, 3), torch.tensor([5.0, 70.0]), torch.randn(2, 10)
    torch.testing.assert_close(ours(x, t, c), reference(x, t, c), rtol=1e-4, atol=1e-5)
    with torch.inference_mode():  # genpol's matrix-product convolutions
        torch.testing.assert_close(ours(x, t, c), reference(x, t, c), rtol=1e-4, atol=1e-5)
    assert count(UNet1D(3, 10, dims, 5, 8, 32, layout="legacy")) > count(ours)


@pytest.mark.parametrize("cls, args", [
    (Conv1d, (6, 8, 5, 1, 2)), (Conv1d, (8, 8, 3, 2, 1)), (Conv1d, (8, 4, 1, 1, 0)),
    (ConvTranspose1d, (8, 8, 4, 2, 1)), (ConvTranspose1d, (6, 3, 4, 2, 1)),
    (ConvTranspose1d, (4, 5, 3, 1, 1)), (ConvTranspose1d, (4, 4, 5, 2, 0))])
def test_the_inference_convolutions_match_pytorchs(cls, args, monkeypatch):
    """Outside autograd the U-Net's convolutions run as matrix products: same results, same
    parameters; with autograd they are PyTorch's own."""
    c_in, c_out, kernel, stride, padding = args
    torch.manual_seed(0)
    module = cls(c_in, c_out, kernel, stride=stride, padding=padding)
    base = nn.Conv1d if cls is Conv1d else nn.ConvTranspose1d
    plain = base(c_in, c_out, kernel, stride=stride, padding=padding)
    plain.load_state_dict(module.state_dict())
    cases = [torch.randn(batch, c_in, length) for length in (1, 2, 3, 4, 7, 16)
             for batch in (1, 3)]
    expected = [plain(x) for x in cases]
    for x, want in zip(cases, expected, strict=True):
        torch.testing.assert_close(module(x), want)

    def pytorchs(*args, **kwargs):
        raise AssertionError("inference fell back to PyTorch's convolution")

    monkeypatch.setattr(base, "forward", pytorchs)
    with torch.inference_mode():
        for x, want in zip(cases, expected, strict=True):
            fast = module(x)
            assert fast.shape == want.shape
            torch.testing.assert_close(fast, want, rtol=1e-5, atol=1e-5)


def test_the_up_path_runs_at_the_skips_resolution():
    dims = [8, 16, 32]
    net = UNet1D(2, 4, dims, n_groups=4)
    lengths: dict[str, int] = {}
    for name, module in net.named_modules():
        if isinstance(module, CondResBlock):
            module.register_forward_hook(
                lambda m, args, out, name=name: lengths.__setitem__(name, args[0].shape[-1]))
    net(torch.randn(1, 16, 2), torch.zeros(1), torch.randn(1, 4))
    # down levels at 16, 8, 4; mid at 4; each up level at the length of the skip it joins
    assert [lengths[f"down.{i}.0"] for i in range(3)] == [16, 8, 4]
    assert [lengths[f"up.{i}.0"] for i in range(2)] == [4, 8]
    assert max(lengths.values()) == 16
    widest = max(dims)
    transposed = [m for m in net.modules() if isinstance(m, nn.ConvTranspose1d)]
    assert len(transposed) == 2 and all(m.in_channels < widest for m in transposed)


@pytest.mark.parametrize("family", ["diffusion", "flow"])
def test_a_checkpoint_saved_before_the_layout_field_loads_as_legacy(family, tmp_path):
    steps = {"num_inference_steps": 3} if family == "diffusion" else {"num_steps": 3}
    torch.manual_seed(0)
    old = make_policy(make_config(family, **SMALL, **steps, unet_layout="legacy"))
    rng = np.random.default_rng(0)
    old.set_stats(compute_stats(rng.normal(size=(50, 3)), rng.normal(size=(50, 6, 2))))
    path = save_policy(old, tmp_path / "old")
    config = yaml.safe_load((path / "config.yaml").read_text())
    del config["unet_layout"]  # as written before the field existed
    (path / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    obs = {"state": torch.randn(2, 3)}
    before = old.sample(obs, 4, torch.Generator().manual_seed(3))
    for loaded in (load_policy(path), vet(path)):
        assert loaded.config.unet_layout == "legacy"
        assert torch.equal(loaded.sample(obs, 4, torch.Generator().manual_seed(3)), before)
    # A new checkpoint records its layout and round-trips as standard.
    new = make_policy(make_config(family, **SMALL, **steps))
    again = load_policy(save_policy(new, tmp_path / "new"))
    assert again.config.unet_layout == "standard" == new.config.unet_layout
    assert yaml.safe_load((tmp_path / "new" / "config.yaml").read_text())["unet_layout"] == \
        "standard"


@pytest.mark.parametrize("values, field", [
    ({"prediction_type": "v_prediction"}, "prediction_type"),
    ({"unet_layout": "wide"}, "unet_layout"),
    ({"diffusion_step_embed_dim": 0}, "diffusion_step_embed_dim"),
])
def test_bad_values_are_refused_by_name(values, field):
    with pytest.raises(ConfigError, match=field):
        DiffusionConfig(**values)


def test_the_step_embedding_width_reaches_the_unet():
    policy = make_policy(make_config("flow", **SMALL, diffusion_step_embed_dim=48))
    first = policy.net.time_mlp.net[0]
    assert (first.in_features, first.out_features) == (48, 192)


def test_sample_prediction_trains_and_samples():
    torch.manual_seed(0)
    policy = make_policy(make_config("diffusion", **SMALL, prediction_type="sample",
                                     num_train_timesteps=20, num_inference_steps=4))
    optimizer = torch.optim.Adam(policy.parameters(), lr=1e-3)
    action = torch.linspace(-0.5, 0.5, 6).view(1, 6, 1).expand(4, 6, 2).contiguous()
    batch = {"state": torch.randn(4, 3), "action": action}
    for _ in range(3):
        loss, info = policy.compute_loss(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        assert torch.isfinite(loss) and "mse_x0" in info
    chunks = policy.sample({"state": torch.randn(2, 3)}, 3, torch.Generator().manual_seed(0))
    assert chunks.shape == (2, 3, 6, 2) and torch.isfinite(chunks).all()
    guided = policy.sample({"state": torch.randn(1, 3)}, 2,
                           prefix=Prefix(np.zeros((6, 2), np.float32), committed=3, overlap=5))
    assert guided.shape == (1, 2, 6, 2) and torch.isfinite(guided).all()


@pytest.mark.parametrize("prediction_type", ["epsilon", "sample"])
def test_guidance_speaks_the_schedulers_language(prediction_type):
    """_output_for gives the net output from which DDIM itself denoises to the steered x1, and
    _denoised reads that x1 back, for either prediction type."""
    policy = make_policy(make_config("diffusion", **SMALL, prediction_type=prediction_type))
    scheduler = policy._scheduler(None)
    scheduler.set_timesteps(policy.config.num_inference_steps)
    x, x1 = torch.randn(2, 6, 2), torch.rand(2, 6, 2) * 1.6 - 0.8
    for t in scheduler.timesteps[:-1]:
        out = policy._output_for(scheduler, x, t, x1)
        # float32 at the noisiest step: eps -> x1 divides by sqrt(alpha_bar) ~ 0.02
        torch.testing.assert_close(policy._denoised(scheduler, x, t, out), x1, rtol=0, atol=1e-3)
        step = scheduler.inner.step(out, t, x, eta=0.0)
        torch.testing.assert_close(step.pred_original_sample, x1, rtol=0, atol=1e-3)


def test_compare_layouts_reports_the_figures():
    out = compare_layouts(down_dims=(8, 16, 32), horizon=5, action_dim=2, cond_dim=4,
                          repeats=2, warmup=1)
    assert out["params_ratio"] == 1.0
    assert out["genpol_params"] == out["reference_params"] > 0
    assert out["genpol_ms"] > 0 and out["reference_ms"] > 0 and out["ratio"] > 0
    legacy = compare_layouts(down_dims=(8, 16, 32), horizon=4, action_dim=2, cond_dim=4,
                             repeats=1, warmup=0, genpol_layout="legacy")
    assert legacy["params_ratio"] > 1.0
