"""One side of `genpol bench planner --baseline`: times the planner's call with one checkout's code.

Run as `python -c <this file's text>` with PYTHONPATH set to a checkout's src/ (the parent passes
it), so `genpol` here is that checkout's, old or new. It therefore imports nothing from the new
bench and builds its policies through the checkout's own API: bench.planner.make_holder, which
every genpol since the planner bench has, else make_config + make_policy + PolicyHolder. Two of
these run side by side and the parent asks each in turn, so old and new code see the same load.

Protocol, one JSON object a line on stdout: {"ready": ..., "missing": {family: why}} once the
policies are built and warm;
then for each request line "FAMILY CALLS SECONDS" on stdin (at least CALLS calls, and more until
SECONDS have passed), {"family": FAMILY, "ms": [...]}; "quit" ends.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any


def build(family: str, seed: int) -> Any:
    """A PolicyHolder with an untrained `family` policy at its SO-101 defaults, state only."""
    try:
        from genpol.bench import planner
    except ImportError:
        planner = None  # type: ignore[assignment]
    if planner is not None and hasattr(planner, "make_holder"):
        return planner.make_holder(family, "state", "cpu", seed)
    import torch

    from genpol import robot
    from genpol.planning import PolicyHolder
    from genpol.policies import make_config, make_policy

    torch.manual_seed(seed)
    joints = list(robot.JOINT_NAMES)
    config = make_config(family, state_dim=len(joints), action_dim=len(joints), horizon=16,
                         joint_names=joints)
    holder = PolicyHolder("cpu")
    holder.policy = make_policy(config).eval()
    return holder


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--families", required=True)
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--samples", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    import genpol
    from genpol import robot

    positions = {name: 0.0 for name in robot.JOINT_NAMES}
    holders, missing = {}, {}
    for family in args.families.split(","):
        try:  # a family this checkout lacks is reported, not fatal
            holders[family] = build(family, args.seed)
        except (ValueError, KeyError) as exc:
            missing[family] = f"{type(exc).__name__}: {exc}"
    for holder in holders.values():
        for _ in range(args.warmup):
            holder.sample(positions, None, args.samples)
    torch.set_num_threads(args.threads)  # in case building a holder changed it
    print(json.dumps({"ready": True, "genpol": genpol.__file__, "missing": missing,
                      "torch_threads": torch.get_num_threads()}), flush=True)
    for line in sys.stdin:
        words = line.split()
        if not words or words[0] == "quit":
            break
        family, calls, seconds = words[0], int(words[1]), float(words[2])
        ms: list[float] = []
        start = time.perf_counter()
        while len(ms) < calls or time.perf_counter() - start < seconds:
            t0 = time.perf_counter()
            holders[family].sample(positions, None, args.samples)
            ms.append((time.perf_counter() - t0) * 1e3)
        print(json.dumps({"family": family, "ms": ms}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
