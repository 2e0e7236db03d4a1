"""The `genpol` command. Heavy imports (torch) happen inside the subcommands that need them."""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any, Sequence

import yaml


def _parse_sets(items: Sequence[str]) -> dict[str, Any]:
    """--set key=value pairs, values parsed as YAML (numbers, lists, booleans)."""
    values = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"--set expects key=value, got {item!r}")
        values[key] = yaml.safe_load(raw)
    return values


def cmd_train(args: argparse.Namespace) -> int:
    from genpol.data.sources import load_chunks
    from genpol.train import TrainConfig, config_for_data, train

    overrides: dict[str, Any] = {}
    if args.config:
        with open(args.config) as f:
            overrides.update(yaml.safe_load(f) or {})
    overrides.update(_parse_sets(args.set))
    family = overrides.pop("family", None) or args.family
    data = load_chunks(args.data, overrides.get("horizon"))
    config = config_for_data(family, data, **overrides)
    tcfg = TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                       device=args.device, checkpoint_every=args.checkpoint_every,
                       ema_decay=args.ema, progress=not args.no_progress)
    result = train(config, data, tcfg, out_dir=args.out)
    if result.history:
        last = result.history[-1]
        print(f"trained {family} for {tcfg.steps} steps on {len(data)} samples in "
              f"{result.seconds:.1f} s (world size {result.world_size}); final loss "
              f"{last['loss']:.4f}; checkpoint: {args.out}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    if args.name == "multimodal":
        from genpol.bench import multimodal

        families = args.families.split(",") if args.families else None
        start = time.perf_counter()
        results = multimodal.run(families, quick=args.quick, out=args.out, seed=args.seed,
                                 device=args.device, progress=not args.no_progress,
                                 jobs=args.jobs)
        print()
        print(multimodal.format_table(results))
        out = args.out or "bench-results/multimodal"
        print(f"\nwall time {time.perf_counter() - start:.1f} s; results in {out}/results.json")
        return 0
    raise SystemExit(f"unknown benchmark {args.name!r}; known: multimodal")


def cmd_demo(args: argparse.Namespace) -> int:
    print("genpol demo: the mode-averaging benchmark, quick form (every family on the obstacle "
          "problem)\n")
    args.name, args.quick, args.families = "multimodal", True, None
    args.out = args.out or "demo-output"
    return cmd_bench(args)


def cmd_bringup(args: argparse.Namespace) -> int:
    from genpol.launcher import bringup

    try:
        return bringup(args.launch_args, duration=args.duration)
    except RuntimeError as exc:
        print(f"genpol bringup: error: {exc}", file=sys.stderr)
        return 2


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="genpol", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a policy on a dataset")
    t.add_argument("--data", required=True, help="dataset path (.npz)")
    t.add_argument("--family", default="flow")
    t.add_argument("--out", required=True, help="checkpoint directory to write")
    t.add_argument("--config", help="YAML file of policy config values")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="policy config value, e.g. --set hidden_dim=128 (repeatable)")
    t.add_argument("--steps", type=int, default=2000)
    t.add_argument("--batch-size", type=int, default=256)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--ema", type=float, default=0.0, help="EMA decay of the weights, 0 = off")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    t.add_argument("--checkpoint-every", type=int, default=0)
    t.add_argument("--no-progress", action="store_true")
    t.set_defaults(func=cmd_train)

    g = sub.add_parser("bringup", help="start the ROS graph without ros2 launch",
                       description="Same nodes and parameters as `ros2 launch genpol "
                                   "bringup.launch.py`; arguments as name:=value.")
    g.add_argument("launch_args", nargs="*", metavar="NAME:=VALUE",
                   help="sim, policy_path, executor_mode, rviz, use_mock_hardware")
    g.add_argument("--duration", type=float, help="stop after this many seconds")
    g.set_defaults(func=cmd_bringup)

    for name, func, helptext in (("bench", cmd_bench, "run a benchmark"),
                                 ("demo", cmd_demo, "the main demonstration")):
        b = sub.add_parser(name, help=helptext)
        if name == "bench":
            b.add_argument("name", help="benchmark name: multimodal")
            b.add_argument("--quick", action="store_true", help="the short form (<= 2 min)")
            b.add_argument("--families", help="comma-separated subset of families")
        b.add_argument("--out", help="output folder")
        b.add_argument("--seed", type=int, default=0)
        b.add_argument("--device", default="cpu")
        b.add_argument("--no-progress", action="store_true")
        b.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1),
                       help="families trained in parallel, one torch thread each")
        b.set_defaults(func=func)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as exc:
        # Config, data and checkpoint errors are ValueErrors with a message meant for the user.
        print(f"genpol {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
