"""The joint-state demo's targets object: one entry per target, met only when reached."""

from __future__ import annotations


def test_demo_targets_name_each_target_and_fail_below_each_bar():
    from genpol.jobs.demo import demo_targets

    f = {"success_rate": 0.95, "mode_entropy": 0.9, "chunk_rate_hz": 5.5}
    t = demo_targets(f, 500.0)
    assert list(t) == ["success", "mode_entropy", "chunk_rate_hz", "wall_s"]
    assert all(set(v) == {"value", "threshold", "met"} and v["met"] for v in t.values())
    for key, low in (("success_rate", 0.85), ("mode_entropy", 0.7), ("chunk_rate_hz", 1.1)):
        name = {"success_rate": "success"}.get(key, key)
        assert not demo_targets({**f, key: low}, 500.0)[name]["met"]
    assert not demo_targets({**f, "chunk_rate_hz": None}, 500.0)["chunk_rate_hz"]["met"]
    assert not demo_targets(f, 700.0)["wall_s"]["met"]


def test_the_demo_preset_trains_binned_on_absolute_chunks_and_the_rest_on_relative():
    from genpol import presets
    from genpol.jobs.demo import load_preset, policy_settings

    p = load_preset()
    frames = {f: policy_settings(p, f)["action_frame"]
              for f in ("flow", "diffusion", "cvae", "binned")}
    assert frames == {"flow": "relative", "diffusion": "relative", "cvae": "relative",
                      "binned": "absolute"}
    assert policy_settings(p, "binned")["n_bins"] == \
        presets.policy("binned")["n_bins"]  # the family's own values stay
