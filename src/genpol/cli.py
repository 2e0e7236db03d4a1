"""The `genpol` command. Heavy imports (torch) happen inside the subcommands that need them."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

import yaml

from genpol import topics


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
    from genpol.policies.acceleration import set_threads

    set_threads(args.threads)  # before any torch work: inter-op threads are fixed at the first
    from genpol.data.sources import load_chunks
    from genpol.train import TrainConfig, config_for_data, train

    overrides: dict[str, Any] = {}
    if args.config:
        with open(args.config) as f:
            overrides.update(yaml.safe_load(f) or {})
    overrides.update(_parse_sets(args.set))
    family = overrides.pop("family", None) or args.family
    cal = None
    if args.calibration:
        from genpol import calibration

        cal = calibration.load(args.calibration)
    data = load_chunks(args.data, overrides.get("horizon"), lerobot_units=args.lerobot_units,
                       calibration=cal)
    config = config_for_data(family, data, **overrides)
    tcfg = TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                       device=args.device, checkpoint_every=args.checkpoint_every,
                       ema_decay=args.ema, state_noise=args.state_noise,
                       state_noise_floor=args.state_noise_floor,
                       mask_padding=not args.train_on_padding,
                       progress=not args.no_progress, threads=args.threads,
                       num_workers=args.workers, amp=args.amp)
    result = train(config, data, tcfg, out_dir=args.out)
    if result.history:
        last = result.history[-1]
        print(f"trained {family} for {tcfg.steps} steps on {len(data)} samples in "
              f"{result.seconds:.1f} s (world size {result.world_size}); final loss "
              f"{last['loss']:.4f}; checkpoint: {args.out}")
        print(f"speed: {result.steps_per_second:.2f} steps/s, "
              f"{result.samples_per_second:.0f} samples/s; {result.threads} torch threads, "
              f"{result.num_workers} loader workers, amp {'on' if result.amp else 'off'}")
    return 0


def cmd_bench_multimodal(args: argparse.Namespace) -> int:
    """Policy families on the obstacle task."""
    from genpol.bench import multimodal

    families = args.families.split(",") if args.families else None
    start = time.perf_counter()
    results = multimodal.run(families, quick=args.quick, out=args.out, seed=args.seed,
                             device=args.device, progress=not args.no_progress, jobs=args.jobs)
    return _bench_done(multimodal.format_table(results), start,
                       args.out or "bench-results/multimodal")


def cmd_bench_execution(args: argparse.Namespace) -> int:
    """Execution strategies closed-loop on reach_around."""
    from genpol.bench.execution import format_table
    from genpol.jobs import bench_execution

    out = args.out or "bench-results/execution"
    start = time.perf_counter()
    try:
        policies = dict(_key_value(v, "--policy") for v in args.policy or [])
        results = bench_execution.run(
            args.families.split(",") if args.families else None, quick=args.quick, out=out,
            episodes=args.episodes,
            delays=[float(v) for v in args.delays.split(",")] if args.delays else None,
            strategies=args.strategies.split(",") if args.strategies else None,
            policies=policies, train_steps=args.train_steps, push=not args.no_push,
            progress=not args.no_progress, command=_bench_command())
    except (ValueError, RuntimeError) as exc:
        print(f"genpol bench execution: error: {exc}", file=sys.stderr)
        return 2
    return _bench_done(format_table(results), start, out)


def _key_value(text: str, flag: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key or not value:
        raise ValueError(f"{flag} wants FAMILY=PATH, got {text!r}")
    return key, value


def _bench_command() -> str:
    import shlex

    return shlex.join(["genpol", *sys.argv[1:]])


def _bench_done(table: str, start: float, out: str) -> int:
    print()
    print(table)
    print(f"\nwall time {time.perf_counter() - start:.1f} s; results in {out}/results.json")
    return 0


def cmd_bench_planner(args: argparse.Namespace) -> int:
    """Chunk latency per family."""
    from genpol.bench import planner as bench

    out = args.out or "bench-results/planner"
    start = time.perf_counter()
    results = bench.run(args.families.split(",") if args.families else None,
                        args.configs.split(",") if args.configs else None,
                        quick=args.quick, out=out, seed=args.seed, iters=args.iters,
                        threads=args.threads, progress=not args.no_progress,
                        command=_bench_command(), baseline=args.baseline,
                        device_names=args.devices.split(",") if args.devices else None,
                        unet=not args.no_reference, precision=args.precision,
                        compile=args.compile)
    return _bench_done(bench.format_table(results), start, out)


def cmd_bench_executor(args: argparse.Namespace) -> int:
    """Tick timing beside a live planner and simulator."""
    from genpol.bench.executor import format_table
    from genpol.jobs import bench_executor

    out = args.out or "bench-results/executor"
    start = time.perf_counter()
    duration = args.duration if args.duration is not None else (10.0 if args.quick else 60.0)
    try:
        results = bench_executor.run(duration, out=out, variants=args.variants.split(","),
                                     policy=args.policy, train_steps=args.train_steps,
                                     seed=args.seed, progress=not args.no_progress,
                                     command=_bench_command())
    except RuntimeError as exc:
        print(f"genpol bench executor: error: {exc}", file=sys.stderr)
        return 1
    return _bench_done(format_table(results), start, out)


def cmd_bench_faults(args: argparse.Namespace) -> int:
    """The fault matrix injected into the real graph."""
    from genpol.bench.faults import format_table
    from genpol.jobs import bench_faults

    out = args.out or "bench-results/faults"
    start = time.perf_counter()
    try:
        results = bench_faults.run(args.rows.split(",") if args.rows else None,
                                   quick=args.quick, out=out, policy=args.policy,
                                   train_steps=args.train_steps, seed=args.seed,
                                   progress=not args.no_progress, command=_bench_command())
    except RuntimeError as exc:
        print(f"genpol bench faults: error: {exc}", file=sys.stderr)
        return 1
    return _bench_done(format_table(results), start, out)


def _guarded(name: str, fn, /, *args, **kwargs) -> int:
    """Run a long job: its RuntimeError (a node died, a timeout) as one line on stderr, exit 1;
    Ctrl-C as exit 130. The job itself stops whatever it started."""
    try:
        fn(*args, **kwargs)
    except RuntimeError as exc:
        print(f"genpol {name}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    import shlex

    from genpol.jobs import demo

    if args.no_cameras and not args.vision:
        raise SystemExit("genpol demo: --no-cameras is the vision demo's blind control; use it "
                         "with --vision (the plain demo's policy sees joint states only already)")

    from genpol.rosenv import job_network

    with job_network("demo"):  # its line first; demo.run and its stages reuse the domain
        print("genpol demo: record demonstrations in simulation -> LeRobot v3 dataset -> train "
              "-> closed-loop evaluation through the ROS graph\n", flush=True)
        return _guarded("demo", demo.run, args.family,
                        out=args.out or ("demo-output-vision" if args.vision else "demo-output"),
                        progress=not args.no_progress, vision=args.vision,
                        cameras=not args.no_cameras,
                        command=shlex.join(["genpol", *sys.argv[1:]]))


def cmd_bringup(args: argparse.Namespace) -> int:
    from genpol.launcher import bringup

    try:
        return bringup(args.launch_args, duration=args.duration, status=not args.no_status)
    except RuntimeError as exc:
        print(f"genpol bringup: error: {exc}", file=sys.stderr)
        return 2


def _ros_module(command: str, name: str) -> Any:
    """genpol.nodes.<name> for a command that talks to a graph, or None (said on stderr) when
    rclpy or the messages are missing."""
    try:
        return importlib.import_module(f"genpol.nodes.{name}")
    except ImportError as exc:
        print(f"genpol {command}: error: needs rclpy and the ROS 2 messages ({exc}); `make "
              "setup` installs them, or source a ROS 2 distribution", file=sys.stderr)
        return None


def cmd_status(args: argparse.Namespace) -> int:
    """`genpol status`: the running graph's status line, no ROS 2 CLI needed."""
    status_client = _ros_module("status", "status_client")
    if status_client is None:
        return 1
    try:
        return status_client.run(once=args.once, timeout=args.timeout)
    except KeyboardInterrupt:
        return 0


def cmd_param(args: argparse.Namespace) -> int:
    """`genpol param`: a running node's parameters over its services, no ROS 2 CLI needed."""
    param_client = _ros_module("param", "param_client")
    if param_client is None:
        return 1
    try:
        with param_client.connect(args.node, args.timeout) as node:
            if args.action == "list":
                print("\n".join(node.names()))
            elif args.action == "get":
                print(param_client.show(node.get(args.name)))
            elif args.action == "describe":
                print("\n".join(node.describe(name).text() for name in args.name))
            else:
                value = node.set(args.name, args.value)
                print(f"{node.path}: {args.name} = {param_client.show(value)}")
    except RuntimeError as exc:
        print(f"genpol param {args.action}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


def _node_params(items: Sequence[str]) -> dict[str, dict[str, Any]]:
    """--param node.name=value pairs -> {node: {name: value}}, values parsed as YAML."""
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        node, dot, name = key.partition(".")
        if not (sep and dot and node and name):
            raise SystemExit(f"--param expects node.name=value, got {item!r}")
        out.setdefault(node, {})[name] = yaml.safe_load(raw)
    return out


def cmd_eval(args: argparse.Namespace) -> int:
    import shlex

    from genpol.jobs.eval import EvalSettings, run

    settings = EvalSettings(
        policy=args.policy, task=args.task, episodes=args.episodes, out=args.out,
        seed=args.seed, scene_seed=args.scene_seed, scene_spread=args.scene_spread,
        executor_mode=args.executor_mode or "",
        videos=args.videos, timeout_s=args.timeout_s or 0.0, hold_s=args.hold_s,
        push_at_s=args.push_at, progress=not args.no_progress, params=_node_params(args.param))
    return _guarded("eval", run, settings, command=shlex.join(["genpol", *sys.argv[1:]]))


def cmd_record(args: argparse.Namespace) -> int:
    if args.keyboard:
        return _record_keyboard(args)
    if not args.sim:
        raise SystemExit("genpol record: give --sim (scripted experts in simulation) or "
                         "--keyboard (episodes of a running recorder node, beside a leader "
                         "arm's driver and teleop, started and stopped by key)")
    if not args.out:
        raise SystemExit("genpol record --sim: --out DIR is required (the dataset directory)")
    from genpol.jobs.record import RecordSettings, record_sim

    settings = RecordSettings(task=args.task, episodes=args.episodes, out=args.out,
                              seed=args.seed, scene_seed=args.scene_seed,
                              scene_spread=args.scene_spread, mode=args.mode,
                              episodes_per_start=args.episodes_per_start,
                              cameras=not args.no_cameras, settle_s=args.settle_s,
                              backend=args.backend, progress=not args.no_progress,
                              keep_logs=args.keep_logs, workers=args.workers)
    start = time.perf_counter()

    def record() -> None:
        paths = record_sim(settings)
        print(f"recorded {len(paths)} episodes into {args.out} in "
              f"{time.perf_counter() - start:.1f} s")

    return _guarded("record", record)


def _record_keyboard(args: argparse.Namespace) -> int:
    """`genpol record --keyboard`: the recorder's own parameters decide what goes where, so the
    --sim options are refused rather than silently ignored."""
    if args.sim:
        raise SystemExit("genpol record: --keyboard drives a recorder that runs elsewhere and "
                         "--sim starts its own graph; give one of them")
    if args.out:
        raise SystemExit("genpol record --keyboard: the recorder's dataset_dir parameter "
                         "decides where episodes go; drop --out (set dataset_dir where the "
                         "recorder starts: config/recorder.yaml, or `python -m "
                         "genpol.nodes.recorder --ros-args -p dataset_dir:=DIR`)")
    from genpol.jobs import record_keyboard

    code = 0

    def drive() -> None:
        nonlocal code
        code = record_keyboard.run(args.recorder, timeout=args.timeout)

    return _guarded("record", drive) or code


def cmd_dataset(args: argparse.Namespace) -> int:
    if args.action != "build":
        raise SystemExit(f"unknown dataset action {args.action!r}; known: build")
    from genpol.data.build import build_dataset, parse_cameras, parse_size

    if len(args.paths) < 2:
        raise SystemExit("genpol dataset build: give the episode bags or recording directories, "
                         "then the output directory")
    *inputs, out = args.paths
    try:
        report = build_dataset(inputs, out, fps=args.fps, cameras=parse_cameras(args.cameras),
                               image_size=parse_size(args.image_size), codec=args.codec,
                               overwrite=args.overwrite,
                               include_unsuccessful=args.include_unsuccessful,
                               state_topic=args.state_topic, action_topic=args.action_topic,
                               task=args.task, progress=not args.no_progress)
    except KeyboardInterrupt:
        return 130
    for bag, reason in report.skipped:
        print(f"skipped {bag}: {reason}")
    print(f"wrote {report.episodes} episodes ({report.frames} frames at {report.fps:g} fps, "
          f"cameras {report.cameras or 'none'}) to {report.out} in {report.seconds:.1f} s")
    return 0


def cmd_bag(args: argparse.Namespace) -> int:
    from genpol.recording.repair import FAILED, repair_paths

    failed = 0
    for result in repair_paths(args.paths, keep_torn=args.keep_torn, force=args.force):
        print(result.describe(), flush=True)
        failed += result.action == FAILED
    return 1 if failed else 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="genpol", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a policy on a dataset")
    t.add_argument("--data", required=True,
                   help="dataset path: .npz, or a LeRobot v3.0 dataset directory")
    t.add_argument("--family", default="flow")
    t.add_argument("--out", required=True, help="checkpoint directory to write")
    t.add_argument("--config", help="YAML file of policy config values")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="policy config value, e.g. --set hidden_dim=128 (repeatable)")
    t.add_argument("--steps", type=int, default=2000)
    t.add_argument("--batch-size", type=int, default=256)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--ema", type=float, default=0.0, help="EMA decay of the weights, 0 = off")
    t.add_argument("--state-noise", type=float, default=0.0,
                   help="Gaussian noise on the joint-state input while training, as a fraction "
                        "of each joint's spread in the data (0 = off)")
    t.add_argument("--state-noise-floor", type=float, default=0.0,
                   help="the least joint-state noise any joint gets, in the state's units (rad "
                        "for the SO-101): below the sensor's resolution (STS3215: 1.5 mrad) a "
                        "difference must not steer the policy (0 = off)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    t.add_argument("--checkpoint-every", type=int, default=0)
    t.add_argument("--train-on-padding", action="store_true",
                   help="train on chunk steps past an episode's end (default: masked out)")
    t.add_argument("--threads", type=int, default=0,
                   help="torch threads (0: torch's default, one per core)")
    t.add_argument("--workers", type=int, default=-1,
                   help="DataLoader workers for image batches (-1: the cores training leaves "
                        "free, at most 4; 0 without images)")
    t.add_argument("--amp", action="store_true",
                   help="bf16 autocast on CUDA (no effect on the CPU)")
    t.add_argument("--lerobot-units", choices=["degrees", "range"],
                   help="a dataset recorded with LeRobot: its arm joints in degrees "
                        "(use_degrees=True) or -100..100 (needs --calibration); asked for only "
                        "when the values cannot tell")
    t.add_argument("--calibration", metavar="JSON",
                   help="the recording arm's LeRobot calibration file: converts a LeRobot "
                        "dataset to the joint angles genpol's driver setup reads on that arm")
    t.add_argument("--no-progress", action="store_true")
    t.set_defaults(func=cmd_train)

    g = sub.add_parser("bringup", help="start the ROS graph without ros2 launch",
                       description="Same nodes and parameters as `ros2 launch genpol "
                                   "bringup.launch.py`; arguments as name:=value.")
    g.add_argument("launch_args", nargs="*", metavar="NAME:=VALUE",
                   help="sim, policy_path, executor_mode, rviz, use_mock_hardware, task, "
                        "seed, scene_seed, scene_spread; or NODE.PARAM:=VALUE for any "
                        "parameter of a node, e.g. planner.inference_rate_hz:=1.0")
    g.add_argument("--duration", type=float, help="stop after this many seconds")
    g.add_argument("--no-status", action="store_true",
                   help="do not print the graph's status line (as `genpol status`) every second")
    g.set_defaults(func=cmd_bringup)

    st = sub.add_parser("status", help="the running graph's status in one line",
                        description="Planner, executor (and sim_arm) status in one line, from "
                                    "their ~/status topics, printed every second until Ctrl-C, "
                                    "on this shell's ROS network (ROS_DOMAIN_ID).")
    st.add_argument("--once", action="store_true", help="print one line and exit")
    st.add_argument("--timeout", type=float, default=5.0,
                    help="seconds to wait for the first status (default 5); exit 1 if none")
    st.set_defaults(func=cmd_status)

    _add_param(sub)

    e = sub.add_parser("eval", help="evaluate a policy closed-loop in the simulated ROS graph",
                       description="Starts sim_arm, planner and executor as `genpol bringup` "
                                   "does, runs episodes from randomised starts, and writes "
                                   "results.json, paths.png and rollouts.mp4.")
    e.add_argument("--policy", required=True, help="checkpoint directory")
    e.add_argument("--task", default="reach_around", help="reach_around or pick_place")
    e.add_argument("--episodes", type=int, default=10)
    e.add_argument("--out", default="eval-results", help="output folder")
    e.add_argument("--seed", type=int, default=0,
                   help="sim_arm seed: episode i starts from the pose of seed + 1 + i")
    e.add_argument("--scene-seed", type=int, default=-1,
                   help=">= 0: one object layout for every episode (-1: one per episode)")
    e.add_argument("--scene-spread", type=float, default=1.0,
                   help="reach_around: how far layouts range sideways (3: only a policy that "
                        "sees the scene reaches the target)")
    e.add_argument("--executor-mode", help="continue, ensemble, latest or average "
                                           "(default: config/executor.yaml)")
    e.add_argument("--videos", type=int, default=3, help="episodes recorded into the MP4")
    e.add_argument("--timeout-s", type=float,
                   help="sim seconds per episode (default 10 reach_around, 20 pick_place)")
    e.add_argument("--hold-s", type=float, default=0.5, help="success must hold this long")
    e.add_argument("--push-at", type=float, default=0.0, metavar="S",
                   help="push the arm off its path once per episode, S sim seconds in (sim_arm "
                        "~/push, sim_arm.push_offset_rad); results add success after push "
                        "(default 0: no push)")
    e.add_argument("--param", action="append", default=[], metavar="NODE.NAME=VALUE",
                   help="node parameter over config/<node>.yaml, e.g. planner.num_samples=16 "
                        "(repeatable)")
    e.add_argument("--no-progress", action="store_true")
    e.set_defaults(func=cmd_eval)

    r = sub.add_parser("record", help="record demonstrations (rosbag2 MCAP, one bag per episode)",
                       description="--sim: the simulator's scripted experts play through a "
                                   "leader/follower teleoperation into the recorder node. "
                                   "--keyboard: a running recorder's episodes (a leader arm's "
                                   "graph) started, stopped and discarded by key.")
    r.add_argument("--sim", action="store_true", help="record scripted experts in simulation")
    r.add_argument("--keyboard", action="store_true",
                   help="start/stop/discard episodes of a running recorder by key: space/s "
                        "start, Enter/right arrow success, f failed, left arrow/d discard, "
                        "q/Esc quit (from a pipe: one word a line, start|stop|fail|discard|quit)")
    r.add_argument("--recorder", default="recorder",
                   help="--keyboard: the recorder node's name, with its namespace if any")
    r.add_argument("--timeout", type=float, default=10.0,
                   help="--keyboard: seconds to wait for the recorder, and for each answer")
    r.add_argument("--task", default="reach_around", help="reach_around or pick_place")
    r.add_argument("--episodes", type=int, default=10)
    r.add_argument("--out", help="--sim: dataset directory (episode bags go inside)")
    r.add_argument("--seed", type=int, default=0,
                   help="sim_arm's first start pose, and the experts' mode draws")
    r.add_argument("--scene-seed", type=int, default=-1,
                   help=">= 0: one object layout for every episode (-1: one per episode)")
    r.add_argument("--scene-spread", type=float, default=1.0,
                   help="reach_around: how far layouts range sideways (3: only a policy that "
                        "sees the scene reaches the target)")
    r.add_argument("--mode", default="random",
                   help="random (50/50), alternate, or one mode (left, right, top, front)")
    r.add_argument("--episodes-per-start", type=int, default=1,
                   help="record each start pose this many times (2 with --mode alternate: "
                        "every start shown both ways)")
    r.add_argument("--no-cameras", action="store_true", help="record joint states only")
    r.add_argument("--settle-s", type=float, default=0.5,
                   help="seconds recorded still before and after each demonstration")
    r.add_argument("--backend", default="auto", help="auto, mcap or rosbag2_py")
    r.add_argument("--workers", type=int, default=1,
                   help="--sim: graphs recording at once, each on its own private ROS domain, "
                        "into OUT/worker-K (a scripted episode plays in real time and one graph "
                        "keeps under a core busy: 2 on a 2-core machine)")
    r.add_argument("--keep-logs", action="store_true", help="keep the nodes' logs")
    r.add_argument("--no-progress", action="store_true")
    r.set_defaults(func=cmd_record)

    d = sub.add_parser("dataset", help="build a LeRobot v3.0 dataset from recorded episodes",
                       description="build: time-align each recorded episode (rosbag2 bags from "
                                   "the recorder) to a fixed fps and write a LeRobotDataset v3.0 "
                                   "directory that `genpol train --data` and LeRobot read.")
    d.add_argument("action", choices=["build"])
    d.add_argument("paths", nargs="+", metavar="PATH",
                   help="episode bags or recording directories, then the output directory")
    d.add_argument("--fps", type=float, help="frame rate (default: the episodes' recorded fps)")
    d.add_argument("--cameras", help="name=/image/topic pairs, comma-separated, or 'none' "
                                     "(default: front=/camera/image_raw,"
                                     "wrist=/wrist_camera/image_raw where recorded)")
    d.add_argument("--image-size", metavar="WxH", help="resize camera frames, e.g. 96x96")
    d.add_argument("--codec", default="h264", choices=["h264", "av1", "mpeg4"],
                   help="video codec (LeRobot's default is av1)")
    d.add_argument("--state-topic", default=topics.JOINT_STATES)
    d.add_argument("--action-topic", default=topics.LEADER_JOINT_STATES)
    d.add_argument("--task", help="task text for episodes whose metadata has none")
    d.add_argument("--include-unsuccessful", action="store_true",
                   help="keep episodes whose metadata says success: false (left out by "
                        "default, and listed)")
    d.add_argument("--skip-unsuccessful", action="store_true", help=argparse.SUPPRESS)
    d.add_argument("--overwrite", action="store_true", help="replace an existing output")
    d.add_argument("--no-progress", action="store_true")
    d.set_defaults(func=cmd_dataset)

    bg = sub.add_parser("bag", help="repair episode bags a killed recorder left torn",
                        description="repair: rewrite each torn episode's MCAP up to its last "
                                    "complete record, with its summary and indexes, and write "
                                    "metadata.yaml, so ros2 bag, rosbags and Foxglove open it; "
                                    "prints what each kept and lost. Whole bags are left as "
                                    "they are.")
    bg.add_argument("action", choices=["repair"])
    bg.add_argument("paths", nargs="+", metavar="DIR",
                    help="episode directories, or dataset directories of them (discarded "
                         "episodes there are left as they are)")
    bg.add_argument("--keep-torn", action="store_true",
                    help="keep each torn original beside the repaired file as <name>.mcap.torn "
                         "(default: replaced once the repaired file is written and synced)")
    bg.add_argument("--force", action="store_true",
                    help="also repair episodes that say they are still being recorded (by a "
                         "running process or on another host): make sure no recorder writes "
                         "them")
    bg.set_defaults(func=cmd_bag)

    m = sub.add_parser("demo", help="the main demonstration: record, dataset, train, evaluate",
                       description="Records scripted demonstrations in simulation through the "
                                   "recorder, builds a LeRobot v3 dataset, trains a policy and "
                                   "evaluates it closed-loop (settings: config/demo.yaml).")
    m.add_argument("--family", default="flow", help="policy family (default flow)")
    m.add_argument("--vision", action="store_true",
                   help="layouts that vary per episode and a policy that sees the front camera "
                        "(config/demo_vision.yaml), then the same recipe blind as the control")
    m.add_argument("--no-cameras", action="store_true",
                   help="with --vision: train and evaluate only the blind control")
    m.add_argument("--out", help="output folder (default demo-output)")
    m.add_argument("--no-progress", action="store_true")
    m.set_defaults(func=cmd_demo)

    _add_bench(sub)
    return p


def _add_param(sub) -> None:
    """`genpol param list|get|describe|set`: what `ros2 param` does, without a ROS 2 CLI."""
    p = sub.add_parser("param", help="list, get, describe or set a running node's parameters",
                       description="A running node's parameters over its parameter services "
                                   "(no ROS 2 CLI needed), on this shell's ROS network "
                                   "(ROS_DOMAIN_ID). Values are typed as `ros2 param set` "
                                   "types them; an integer given for a double is sent as one.")
    actions = p.add_subparsers(dest="action", required=True)

    def action(name: str, helptext: str) -> argparse.ArgumentParser:
        a = actions.add_parser(name, help=helptext, description=helptext)
        a.add_argument("node", metavar="NODE", help="node name: planner or /planner")
        a.add_argument("--timeout", type=float, default=5.0,
                       help="seconds to wait for the node (default 5)")
        a.set_defaults(func=cmd_param)
        return a

    action("list", "the node's parameter names")
    action("get", "a parameter's value").add_argument("name", metavar="NAME")
    action("describe", "parameters' types, descriptions and limits").add_argument(
        "name", metavar="NAME", nargs="+")
    s = action("set", "set a parameter; a refusal prints the node's reason (exit 1)")
    s.add_argument("name", metavar="NAME")
    s.add_argument("value", metavar="VALUE",
                   help="YAML scalar or list: true, 8, 2.5, text, [a, b]")


def _add_bench(sub) -> None:
    """`genpol bench NAME`: one subcommand per benchmark, each with only the options it uses."""
    b = sub.add_parser("bench", help="run a benchmark",
                       description="multimodal: policy families on the obstacle task; planner: "
                                   "chunk latency per family; executor: tick timing beside a "
                                   "live planner and simulator; execution: execution "
                                   "strategies closed-loop; faults: the fault matrix injected "
                                   "into the running graph.")
    benches = b.add_subparsers(dest="bench", required=True,
                               metavar="{multimodal,planner,executor,execution,faults}")

    def common(name: str, helptext: str, func) -> argparse.ArgumentParser:
        c = benches.add_parser(name, help=helptext, description=helptext)
        c.add_argument("--quick", action="store_true", help="the short form (<= 2 min)")
        c.add_argument("--out", help=f"output folder (default bench-results/{name})")
        c.add_argument("--seed", type=int, default=0)
        c.add_argument("--no-progress", action="store_true")
        c.set_defaults(func=func)
        return c

    m = common("multimodal", "policy families on the two-way obstacle task: success, "
                             "collisions, mode entropy", cmd_bench_multimodal)
    m.add_argument("--families", help="comma-separated subset of families")
    m.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    m.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1),
                   help="families trained in parallel, one torch thread each")

    p = common("planner", "the planner's call per observation per family, config and device: "
                          "latency for 1 and 32 samples, parameters, FLOPs, FLOP/s; targets",
               cmd_bench_planner)
    p.add_argument("--families", help="comma-separated subset of families")
    p.add_argument("--configs",
                   help="comma-separated subset of state, camera96, act_resnet18 (default all; "
                        "--quick: state, camera96)")
    p.add_argument("--devices", help="comma-separated subset of cpu, cuda (default: cpu, and "
                                     "cuda when torch sees one)")
    p.add_argument("--iters", type=int, help="timed calls per cell at most (default 100, "
                                             "--quick 3; fewer when a cell's time runs out)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (default 1, so figures compare across runs and hosts)")
    p.add_argument("--baseline", metavar="SRC",
                   help="an older checkout's src/ directory: time each family's call (state, "
                        "CPU) in its code and in this one, side by side")
    p.add_argument("--no-reference", action="store_true",
                   help="skip the U-Net against the standard layout at (512, 1024, 2048)")
    p.add_argument("--precision", choices=["float32", "bfloat16"], default="float32",
                   help="sampling precision: bfloat16 autocasts matmuls and convolutions "
                        "(default float32)")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the policies' modules (CUDA only)")

    x = common("execution", "execution strategies (latest@1Hz, ensemble@10Hz, consistent+latest "
                            "and real-time chunking at the highest sustained rate) closed-loop "
                            "on reach_around, with injected delay and a push",
               cmd_bench_execution)
    x.add_argument("--families", help="comma-separated subset of flow, diffusion, cvae, binned "
                                      "(default all; --quick: flow)")
    x.add_argument("--strategies", help="comma-separated subset of latest@1Hz, ensemble@10Hz, "
                                        "consistent+latest@max, rtc@max")
    x.add_argument("--delays", help="injected delays in seconds, comma-separated (default "
                                    "0,0.15,0.3; --quick 0,0.3)")
    x.add_argument("--episodes", type=int, help="episodes per cell (default 20, --quick 1)")
    x.add_argument("--policy", action="append", metavar="FAMILY=PATH",
                   help="use this checkpoint instead of training one (repeatable)")
    x.add_argument("--train-steps", type=int, help="training steps per family (default: "
                                                   "config/demo.yaml's)")
    x.add_argument("--no-push", action="store_true", help="skip the push cells")

    e = common("executor", "the executor's 50 Hz tick timing beside a live planner and "
                           "simulator", cmd_bench_executor)
    e.add_argument("--duration", type=float,
                   help="seconds measured per tick source (default 60, --quick 10)")
    e.add_argument("--variants", default="thread,thread_plain,timer,timer_mt",
                   help="comma-separated subset of thread, thread_plain, timer, timer_mt")
    e.add_argument("--policy", help="the planner's checkpoint (default: train a small flow "
                                    "policy, cached under --out)")
    e.add_argument("--train-steps", type=int, default=300,
                   help="training steps of that policy")

    f = common("faults", "faults injected into the running graph (processes killed and "
                         "restarted, malformed chunks, broken checkpoints, a full disk, an "
                         "unplugged camera, busy CPUs), each row with what must hold",
               cmd_bench_faults)
    f.add_argument("--rows", help="comma-separated subset of planner_kill, sim_arm_kill, "
                                  "camera_unplug, recorder_kill, disk_full, malformed_chunks, "
                                  "bad_checkpoints, cpu_hogs (default all; --quick: "
                                  "malformed_chunks, recorder_kill, bad_checkpoints)")
    f.add_argument("--policy", help="the planner's checkpoint (default: train a small flow "
                                    "policy, cached under --out; --quick: an untrained one)")
    f.add_argument("--train-steps", type=int, default=300,
                   help="training steps of that policy")


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
