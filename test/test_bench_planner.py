"""`genpol bench planner`: the quick form with every field and target, FLOP counting, the old-vs-new
comparison against a checkout, and the CUDA column on a host without CUDA."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest
import torch

import genpol
from genpol import cli
from genpol.bench import planner as bench

SRC = Path(genpol.__file__).resolve().parents[1]
META_KEYS = {"command", "host_cpu", "torch", "torch_threads", "date", "cpu_count", "threads",
             "threads_note", "samples", "devices", "wall_seconds"}
TARGETS = {"unet_forward_vs_reference", "unet_params_vs_reference", "cpu_state_no_family_slower",
           "cuda_act_cvae_p50_ms", "cuda_act_diffusion_ddim10_p50_ms", "cuda_act_flow10_p50_ms"}


@pytest.fixture
def unet_stand_in(monkeypatch):
    """genpol.bench.unet_reference replaced by a stand-in that records how it was called."""
    calls = []

    def compare_layouts(**kwargs):
        calls.append(kwargs)
        torch.set_num_threads(2)  # the bench must restore its own thread count
        return {"genpol_ms": 90.0, "reference_ms": 100.0, "ratio": 0.9,
                "genpol_params": 250_000_000, "reference_params": 248_000_000,
                "params_ratio": 250 / 248}

    module = types.ModuleType("genpol.bench.unet_reference")
    module.compare_layouts = compare_layouts  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "genpol.bench.unet_reference", module)
    return calls


def test_quick_bench_writes_every_field_and_target(tmp_path, unet_stand_in):
    threads = torch.get_num_threads()
    results = bench.run(["mse", "cvae"], ["state", "camera96"], quick=True, out=tmp_path,
                        progress=False, command="test", baseline=SRC)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved == json.loads(json.dumps(results))
    meta = saved["_meta"]
    assert set(meta) >= META_KEYS and meta["command"] == "test"
    assert meta["threads"] == meta["torch_threads"] == 1
    assert torch.get_num_threads() == threads  # given back for the tests that run on
    assert meta["samples"] == [1, 32] and "cpu" in meta["devices"]
    assert meta["matmul_gflop_per_s"]["cpu"] > 0
    rows = saved["results"]
    assert {(r["family"], r["config"]) for r in rows if r["device"] == "cpu"} == {
        ("mse", "state"), ("mse", "camera96"), ("cvae", "state"), ("cvae", "camera96")}
    for r in rows:
        assert r["parameters"] > 0 and r["horizon"] == 16
        assert [s["num_samples"] for s in r["samples"]] == [1, 32]
        for s in r["samples"]:
            assert s["calls"] >= 3
            assert 0 < s["p50_ms"] <= s["p99_ms"] <= s["max_ms"] and s["mean_ms"] > 0
            assert s["flops"] > 0 and s["flops_per_chunk"] == s["flops"] / s["num_samples"]
            assert s["gflop_per_s"] == pytest.approx(s["flops"] / s["p50_ms"] * 1e-6, rel=1e-2,
                                                     abs=1e-3)
        assert r["flops_per_chunk"] == r["samples"][0]["flops"]
    camera = next(r for r in rows if (r["family"], r["config"]) == ("mse", "camera96"))
    state = next(r for r in rows if (r["family"], r["config"]) == ("mse", "state"))
    assert camera["flops_per_chunk"] > 10 * state["flops_per_chunk"]  # the image encoder counts

    targets = saved["targets"]
    assert set(targets) == TARGETS
    for t in targets.values():
        assert set(t) >= {"value", "threshold", "met"}
    (call,) = unet_stand_in
    assert call["down_dims"] == (512, 1024, 2048) and call["horizon"] == 16
    assert call["threads"] == 1
    torch.set_num_threads(1)
    try:
        assert bench.compare_unet(quick=True)["ratio"] == 0.9
        assert torch.get_num_threads() == 1  # the stand-in's 2 undone
    finally:
        torch.set_num_threads(threads)
    assert targets["unet_forward_vs_reference"]["value"] == 0.9
    assert targets["unet_forward_vs_reference"]["met"]
    assert targets["unet_params_vs_reference"]["value"] == pytest.approx(2 / 248, abs=1e-4)
    assert targets["unet_params_vs_reference"]["met"]

    # the same code on both sides: each family's ratio is timing noise around 1
    base = saved["baseline"]
    assert base["old_src"] == base["new_src"] == str(SRC)
    assert base["worker_torch_threads"] == {"old": 1, "new": 1} and base["not_compared"] == {}
    assert set(base["families"]) == {"mse", "cvae"}
    for f in base["families"].values():
        assert f["calls_each"] >= 4 and 0.2 < f["ratio"] < 5
    worst = max(f["ratio"] for f in base["families"].values())
    slower = targets["cpu_state_no_family_slower"]
    assert slower["value"] == worst and slower["met"] == (worst <= bench.BASELINE_ALLOWANCE)
    if not torch.cuda.is_available():
        assert all(targets[n]["value"] is None and not targets[n]["met"]
                   and targets[n]["note"] == bench.NO_CUDA
                   for n in TARGETS if n.startswith("cuda_"))
    table, markdown = bench.format_table(results), bench.markdown_table(results)
    assert (tmp_path / "results.md").read_text() == markdown + "\n"
    for name in TARGETS:
        assert name in table and name in markdown
    assert "| cvae | camera96 | cpu |" in markdown and "new / old" in markdown
    print("\n" + table)


def test_flops_counted_for_a_linear_layer():
    layer = torch.nn.Linear(7, 5)
    x = torch.zeros(3, 7)
    assert bench.count_flops(lambda: layer(x), layer) == 2 * 7 * 5 * 3

    class Queries(torch.nn.Module):
        """Feeds a view of its own parameter to a submodule, as the cvae does with its queries:
        under no_grad the view requires grad but has no grad_fn, which the counter trips on."""

        def __init__(self):
            super().__init__()
            self.queries = torch.nn.Parameter(torch.zeros(1, 4, 7))
            self.head = torch.nn.Linear(7, 5)

        def forward(self):
            return self.head(self.queries.expand(2, -1, -1))

    net = Queries()
    with torch.no_grad():
        assert bench.count_flops(net, net) == 2 * 7 * 5 * 4 * 2
    assert all(p.requires_grad for p in net.parameters())


def test_act_config_is_act_sized():
    holder = bench.make_holder("cvae", "act_resnet18", "cpu")
    cfg = holder.policy.config
    assert (cfg.horizon, cfg.image_encoder, list(cfg.image_shape)) == (100, "resnet18",
                                                                       [3, 224, 224])
    assert (cfg.hidden_dim, cfg.dim_feedforward) == (512, 3200)  # LeRobot ACT's widths
    params = sum(p.numel() for p in holder.policy.parameters())
    assert 45e6 < params < 60e6  # ACT's 40.2 M and ResNet-18's 11 M
    assert bench.make_holder("mse", "state", "cpu").policy.config.horizon == 16


def test_targets_without_measurements_and_with_cuda_rows():
    empty = bench.targets([], None, None, None)
    assert set(empty) == TARGETS
    assert all(t["value"] is None and not t["met"] for t in empty.values())
    assert "--baseline" in empty["cpu_state_no_family_slower"]["note"]
    assert empty["cuda_act_cvae_p50_ms"]["note"] == bench.NO_CUDA

    def row(family, p50):
        return {"family": family, "config": "act_resnet18", "device": "cuda:0",
                "samples": [{"num_samples": 1, "p50_ms": p50}]}

    gpu = bench.targets([row("cvae", 2.5), row("diffusion", 12.0)], None, None, "H200")
    assert gpu["cuda_act_cvae_p50_ms"]["value"] == 2.5 and gpu["cuda_act_cvae_p50_ms"]["met"]
    assert gpu["cuda_act_diffusion_ddim10_p50_ms"]["value"] == 12.0
    assert not gpu["cuda_act_diffusion_ddim10_p50_ms"]["met"]
    assert gpu["cuda_act_flow10_p50_ms"]["value"] is None  # not run, though CUDA is there
    assert "not run" in gpu["cuda_act_flow10_p50_ms"]["note"]


def test_cuda_column_on_this_host(monkeypatch):
    if torch.cuda.is_available():
        assert bench.devices() == ["cpu", "cuda"]
    else:
        assert bench.devices() == ["cpu"]
        with pytest.raises(ValueError, match="no CUDA device on this host"):
            bench.devices(["cuda"])
    syncs = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda: syncs.append(1))
    times = bench.time_calls(lambda: None, iters=4, warmup=1, max_seconds=10.0, cuda=True)
    assert len(times) == 4 and len(syncs) == 5  # after warm-up, then after every timed call
    monkeypatch.setattr(torch.cuda, "synchronize", lambda: pytest.fail("synchronize on CPU"))
    assert len(bench.time_calls(lambda: None, iters=4, warmup=1, max_seconds=10.0,
                                cuda=False)) == 4


def test_unknown_names_refused(tmp_path, capsys):
    with pytest.raises(ValueError, match=r"unknown families or configs \['stereo'\].*configs: "
                                         r"\['state', 'camera96', 'act_resnet18'\]"):
        bench.run(["mse"], ["stereo"], out=tmp_path, progress=False)
    assert cli.main(["bench", "planner", "--configs", "stereo", "--out", str(tmp_path)]) == 2
    assert "unknown families or configs ['stereo']" in capsys.readouterr().err
    with pytest.raises(ValueError, match="no genpol package there"):
        bench.compare_baseline(tmp_path, ["mse"], 1, quick=True)
    # a family one checkout lacks is left out of the comparison, said why, not fatal
    partial = bench.compare_baseline(SRC, ["mse", "teleport"], 1, quick=True)
    assert list(partial["families"]) == ["mse"]
    assert "teleport" in partial["not_compared"]["teleport"]
    with pytest.raises(ValueError, match="compile"):  # CUDA only, and the CPU is always there
        bench.run(["mse"], ["state"], out=tmp_path, progress=False, compile=True)
    args = cli.build_parser().parse_args(["bench", "planner", "--configs", "state", "--baseline",
                                          "old/src", "--devices", "cpu"])
    assert (args.configs, args.baseline, args.devices, args.threads) == (
        "state", "old/src", "cpu", 1)
    assert (args.precision, args.compile) == ("float32", False)
