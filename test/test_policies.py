"""The one interface, checked across every family: shapes, checkpoints, refusals."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from genpol import presets
from genpol.policies import (CheckpointError, ConfigError, config_from_dict, families,
                             load_policy, make_config, make_policy, save_policy)
from genpol.policies.families import FAMILIES, config_class, policy_class
from genpol.policies.normalize import compute_stats
from genpol.train import TrainConfig

# Small enough for CPU tests; each family's own defaults are exercised in its own test file.
TINY = {
    "mse": {}, "gaussian": {}, "gmm": {"num_components": 3}, "binned": {"n_bins": 16},
    "cvae": {"latent_dim": 4, "n_heads": 2, "enc_layers": 1, "dec_layers": 1,
             "vae_enc_layers": 1, "dim_feedforward": 64},
    "diffusion": {"down_dims": [16, 32], "num_train_timesteps": 20, "num_inference_steps": 4},
    "flow": {"down_dims": [16, 32], "num_steps": 4},
}
ALL = ["mse", "gaussian", "gmm", "binned", "cvae", "diffusion", "flow"]


def tiny(family: str, **kw):
    values = {"state_dim": 3, "action_dim": 2, "horizon": 6, "hidden_dim": 32, **TINY[family]}
    values.update(kw)
    return make_config(family, **values)


def batch(cfg, b=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = {"state": torch.randn(b, cfg.state_dim, generator=g),
           "action": torch.rand(b, cfg.horizon, cfg.action_dim, generator=g) * 2 - 1}
    if cfg.cameras:
        out["images"] = {c: torch.randint(0, 256, (b, *cfg.image_shape), dtype=torch.uint8,
                                          generator=g) for c in cfg.cameras}
    return out


def test_every_family_is_registered():
    assert families() == ALL


@pytest.mark.parametrize("family", ALL)
def test_the_family_table_reaches_policy_and_config_class(family):
    assert config_class(family) is policy_class(family).config_class
    assert config_class(family).family_name == family
    assert isinstance(make_config(family), config_class(family))


def test_the_mse_baseline_never_imports_diffusers():
    code = ("import sys; from genpol.policies import make_config, make_policy; "
            "make_policy(make_config('mse')); assert 'diffusers' not in sys.modules; "
            "make_policy(make_config('diffusion')); assert 'diffusers' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


POLICIES_DIR = Path(__file__).resolve().parents[1] / "src" / "genpol" / "policies"


def _module_name(path: Path) -> str:
    parts = path.relative_to(POLICIES_DIR.parents[1]).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _policies_imports() -> dict[str, set[str]]:
    """module -> the genpol.policies modules it imports anywhere in its body (function-local
    imports included), plus the family table's lazy imports."""
    modules = {_module_name(p): p for p in POLICIES_DIR.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                for alias in node.names:  # `from package import submodule` imports the module
                    sub = f"{node.module}.{alias.name}"
                    targets.add(sub if sub in modules else node.module)
            elif isinstance(node, ast.ImportFrom):
                raise AssertionError(f"{path}: use absolute imports (genpol.policies....)")
        graph[name] = {t for t in targets if t in modules and t != name}
    graph["genpol.policies.families"] |= {v.split(":")[0] for v in FAMILIES.values()}
    return graph


def test_policies_have_no_import_circle():
    graph = _policies_imports()
    assert "genpol.policies.config" in graph["genpol.policies.families"]
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        if module in path:
            cycle = path[path.index(module):] + [module]
            raise AssertionError(f"import circle in genpol.policies: {' -> '.join(cycle)}")
        if module not in done:
            for target in sorted(graph[module]):
                visit(target, path + [module])
            done.add(module)

    for module in sorted(graph):
        visit(module, [])


@pytest.mark.parametrize("family", ALL)
def test_small_presets_build(family):
    assert presets.families() == ALL
    make_config(family, **presets.policy(family))
    TrainConfig(**presets.train(family))


def test_unknown_presets_are_refused():
    with pytest.raises(presets.PresetError, match="no family 'dit'.*flow"):
        presets.policy("dit")
    with pytest.raises(presets.PresetError, match="no preset group 'huge'.*small"):
        presets.group("huge")


def padded_batch(cfg, garbage: bool, seed=0):
    """A batch whose chunks end 0, 2, 4 and 5 steps early; padded steps repeat the last real one,
    or hold garbage."""
    out = batch(cfg, seed=seed)
    is_pad = torch.zeros(4, cfg.horizon, dtype=torch.bool)
    for row, n in enumerate((0, 2, 4, 5)):
        is_pad[row, cfg.horizon - n:] = True
        last = cfg.horizon - n - 1
        out["action"][row, last + 1:] = out["action"][row, last]
    if garbage:
        g = torch.Generator().manual_seed(seed + 1)
        out["action"][is_pad] = 50.0 * torch.randn(int(is_pad.sum()), cfg.action_dim, generator=g)
    out["action_is_pad"] = is_pad
    return out


def loss_of(policy, b, mask: bool) -> float:
    b = dict(b) if mask else {k: v for k, v in b.items() if k != "action_is_pad"}
    torch.manual_seed(3)  # the same noise, timesteps and latents for every call
    return policy.compute_loss(b)[0].item()


@pytest.mark.parametrize("family", ALL)
def test_padded_steps_do_not_count_when_masked(family):
    policy = make_policy(tiny(family)).eval()  # eval: no dropout draws
    held, garbage = padded_batch(policy.config, False), padded_batch(policy.config, True)
    assert loss_of(policy, garbage, mask=True) == loss_of(policy, held, mask=True)
    assert loss_of(policy, garbage, mask=False) != loss_of(policy, held, mask=False)
    nothing_padded = dict(held, action_is_pad=torch.zeros_like(held["action_is_pad"]))
    assert loss_of(policy, nothing_padded, mask=True) == loss_of(policy, held, mask=False)


def test_masked_loss_is_the_mean_over_real_steps():
    policy = make_policy(tiny("mse")).eval()
    b = padded_batch(policy.config, True)
    with torch.no_grad():
        pred = policy._predict(policy._prepare_obs(b))
    real = ~b["action_is_pad"]
    want = ((pred - b["action"]) ** 2)[real].mean().item()
    assert loss_of(policy, b, mask=True) == pytest.approx(want, rel=1e-6)


def test_a_bad_pad_mask_is_refused():
    policy = make_policy(tiny("mse"))
    b = batch(policy.config)
    with pytest.raises(ValueError, match=r"action_is_pad must be bool of shape \(4, 6\)"):
        policy.compute_loss(dict(b, action_is_pad=torch.zeros(4, 5, dtype=torch.bool)))


@pytest.mark.parametrize("family", ALL)
def test_loss_and_sample_shapes(family):
    cfg = tiny(family)
    policy = make_policy(cfg)
    loss, info = policy.compute_loss(batch(cfg))
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    assert all(isinstance(v, float) for v in info.values())
    obs = batch(cfg, b=2)
    out = policy.sample(obs, num_samples=5)
    assert out.shape == (2, 5, cfg.horizon, cfg.action_dim)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("family", ["mse", "cvae", "flow"])
def test_with_camera(family):
    cfg = tiny(family, cameras=["front"], image_shape=[3, 32, 32])
    policy = make_policy(cfg)
    loss, _ = policy.compute_loss(batch(cfg))
    assert torch.isfinite(loss)
    chunks = policy.predict_chunks(np.zeros(3), {"front": np.zeros((32, 32, 3), np.uint8)}, 2)
    assert chunks.shape == (2, cfg.horizon, cfg.action_dim)


def test_resnet18_encoder_shapes():
    cfg = tiny("mse", cameras=["wrist"], image_shape=[3, 64, 64], image_encoder="resnet18")
    policy = make_policy(cfg)
    assert policy.sample(batch(cfg, b=2), 1).shape == (2, 1, 6, 2)


@pytest.mark.parametrize("family", ALL)
def test_checkpoint_round_trip(family, tmp_path):
    cfg = tiny(family, joint_names=["a", "b"])
    policy = make_policy(cfg)
    rng = np.random.default_rng(0)
    policy.set_stats(compute_stats(rng.normal(size=(50, 3)), rng.normal(size=(50, 6, 2))))
    save_policy(policy, tmp_path / "ckpt")
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == [
        "config.yaml", "model.safetensors", "stats.safetensors"]
    loaded = load_policy(tmp_path / "ckpt")
    assert type(loaded) is type(policy) and loaded.config == cfg
    for key, value in policy.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key
    obs = batch(cfg, b=2)
    a = policy.sample(obs, 3, torch.Generator().manual_seed(7))
    b = loaded.sample(obs, 3, torch.Generator().manual_seed(7))
    assert torch.allclose(a, b)


def test_statistics_travel_with_the_model(tmp_path):
    cfg = tiny("mse")
    policy = make_policy(cfg)
    stats = {"state_mean": np.full(3, 5.0), "state_std": np.full(3, 2.0),
             "action_min": np.array([0.0, 10.0]), "action_max": np.array([1.0, 20.0])}
    policy.set_stats(stats)
    save_policy(policy, tmp_path / "c")
    loaded = load_policy(tmp_path / "c")
    assert torch.allclose(loaded.normalizer.action_max, torch.tensor([1.0, 20.0]))
    out = loaded.sample({"state": torch.zeros(1, 3)}, 1)
    # Un-normalised output lands in the data's units, near the action range.
    assert out[..., 1].mean() > 5


def test_a_joint_that_never_moves_does_not_blow_up_its_reading():
    """reach_around's gripper and wrist roll barely move in the demonstrations (std 2e-4 and
    5e-6 rad): scaled by that spread, the 0.001 rad between a recorded and a freshly reset
    gripper was six standard deviations, and the trained policy's first step at an unseen start
    pose landed 0.25 rad from the arm. The spread is floored (STATE_STD_MIN), so the reading
    counts for what it is."""
    from genpol.data.arrays import ChunkData
    from genpol.policies.normalize import STATE_STD_MIN
    from genpol.train import config_for_data, train

    rng = np.random.default_rng(0)
    moving = rng.uniform(-1.0, 1.0, (256, 1))
    still = 0.199 + rng.normal(0.0, 2e-4, (256, 1))  # a gripper at rest, read with a little noise
    state = np.concatenate([moving, still], axis=1).astype(np.float32)
    action = np.repeat(state[:, None, :], 4, axis=1) + np.linspace(0, 0.3, 4)[None, :, None]
    stats = compute_stats(state, action)
    assert stats["state_std"][1] == pytest.approx(STATE_STD_MIN)
    assert stats["state_std"][0] == pytest.approx(state[:, 0].std(), rel=1e-5)
    torch.manual_seed(0)
    data = ChunkData(state, action.astype(np.float32), joint_names=["a", "g"], fps=10.0)
    policy = train(config_for_data("mse", data, hidden_dim=32), data,
                   TrainConfig(steps=300, batch_size=64, lr=3e-3, device="cpu", threads=1,
                               progress=False)).policy
    recorded = policy.predict_chunks(np.array([0.3, 0.199], np.float32))[0]
    # read 0.002 rad off: unfloored (10 standard deviations) this moved the chunk 0.11 rad
    other = policy.predict_chunks(np.array([0.3, 0.201], np.float32))[0]
    assert np.abs(other - recorded)[:, 0].max() < 0.05, (recorded, other)


def test_wrong_observation_shape_names_both():
    policy = make_policy(tiny("mse"))
    with pytest.raises(ValueError, match=r"shape \(2, 5\), expected \(batch, 3\)"):
        policy.sample({"state": torch.zeros(2, 5)})
    with pytest.raises(ValueError, match=r"shape \(2, 3, 2\), expected \(2, 6, 2\)"):
        policy.compute_loss({"state": torch.zeros(2, 3), "action": torch.zeros(2, 3, 2)})
    cam = make_policy(tiny("mse", cameras=["front"], image_shape=[3, 32, 32]))
    with pytest.raises(ValueError, match=r"image 'front' has shape \(1, 3, 16, 16\), expected"):
        cam.sample({"state": torch.zeros(1, 3), "images": {"front": torch.zeros(1, 3, 16, 16)}})
    with pytest.raises(ValueError, match="do not match the policy's cameras"):
        cam.sample({"state": torch.zeros(1, 3)})


@pytest.mark.parametrize("family,values,match", [
    ("flow", {"horizon": 0}, "horizon must be a positive integer"),
    ("mse", {"horizon": -3}, "horizon must be a positive integer"),
    ("cvae", {"beta": -1.0}, "beta"),
    ("diffusion", {"num_inference_steps": 0}, "num_inference_steps"),
    ("flow", {"num_steps": 0}, "num_steps"),
    ("mse", {"image_encoder": "vit"}, "image_encoder"),
    ("mse", {"not_a_key": 1}, "unknown mse config keys"),
])
def test_bad_config_values_are_refused(family, values, match):
    with pytest.raises(ConfigError, match=match):
        make_config(family, **values)


def test_unknown_family_is_refused():
    with pytest.raises(ConfigError, match="unknown policy family 'dit'.*flow"):
        make_config("dit")
    with pytest.raises(ConfigError, match="no 'family' key"):
        config_from_dict({"horizon": 4})


def test_checkpoint_refusals(tmp_path):
    policy = make_policy(tiny("flow"))
    save_policy(policy, tmp_path / "flow")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_policy(tmp_path / "nowhere")
    (tmp_path / "file").write_text("x")
    with pytest.raises(CheckpointError, match="not a directory"):
        load_policy(tmp_path / "file")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="missing"):
        load_policy(tmp_path / "empty")
    with pytest.raises(CheckpointError, match="family='flow'.*'cvae' is needed"):
        load_policy(tmp_path / "flow", expect={"family": "cvae"})
    with pytest.raises(CheckpointError, match="action_dim=2.*6 is needed"):
        load_policy(tmp_path / "flow", expect={"action_dim": 6})


def test_checkpoint_of_another_shape_names_both(tmp_path):
    save_policy(make_policy(tiny("mse")), tmp_path / "c")
    cfg_file = tmp_path / "c" / "config.yaml"
    raw = yaml.safe_load(cfg_file.read_text())
    raw["horizon"] = 9  # config now disagrees with the stored weights
    cfg_file.write_text(yaml.safe_dump(raw))
    with pytest.raises(CheckpointError, match=r"has shape \(\d+,( \d+)?\), but a 'mse' policy"):
        load_policy(tmp_path / "c")


def test_checkpoint_of_another_family_names_both(tmp_path):
    save_policy(make_policy(tiny("mse")), tmp_path / "m")
    save_policy(make_policy(tiny("gaussian")), tmp_path / "g")
    # Weights of a gaussian policy under an mse config.
    (tmp_path / "m" / "model.safetensors").write_bytes(
        (tmp_path / "g" / "model.safetensors").read_bytes())
    with pytest.raises(CheckpointError, match="'gaussian' policy but its config says 'mse'"):
        load_policy(tmp_path / "m")


def test_checkpoint_never_unpickles(tmp_path):
    save_policy(make_policy(tiny("mse")), tmp_path / "c")
    (tmp_path / "c" / "model.safetensors").write_bytes(b"\x80\x04garbage")
    with pytest.raises(CheckpointError, match="cannot read tensors"):
        load_policy(tmp_path / "c")
