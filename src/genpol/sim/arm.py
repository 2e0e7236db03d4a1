"""ArmSim: the simulated SO-101 as the rest of genpol sees a real one.

Position targets in, joint positions/velocities and camera images out, with physics advanced
explicitly by step(): the caller owns time, so the sim_arm node can run it in real time and tests
and data generation can run it as fast as the CPU allows. No ROS here (nodes/sim_arm.py wraps it).
"""

from __future__ import annotations

import atexit
import weakref
from collections.abc import Callable

import numpy as np

from genpol import robot
from genpol.description import TIP_SITE
from genpol.sim import gl, scene, tasks

import mujoco  # noqa: E402,I001  (scene has chosen the GL backend by now)

_LIVE: weakref.WeakSet = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    # Free GL contexts before interpreter teardown; OSMesa's destructor errors out otherwise.
    for sim in list(_LIVE):
        sim.close()


class ArmSim:
    """MuJoCo SO-101 in the task scene. Joint arrays are in robot.JOINT_NAMES order.

    Not thread-safe: call step(), reset() and render() from one thread at a time (a node with
    several callbacks should hold a lock); render() binds its GL context for the call only, so
    which thread that is may vary.
    """

    def __init__(self, timestep: float = scene.TIMESTEP):
        self.model = scene.load_model(timestep)
        self.data = mujoco.MjData(self.model)
        m = self.model
        joint_ids = [m.joint(name).id for name in robot.JOINT_NAMES]
        self._qadr = np.array([m.jnt_qposadr[j] for j in joint_ids])
        self._dadr = np.array([m.jnt_dofadr[j] for j in joint_ids])
        self._act = np.array([m.actuator(name).id for name in robot.JOINT_NAMES])
        self._ctrl_lo, self._ctrl_hi = m.actuator_ctrlrange[self._act].T
        self._tip = m.site(TIP_SITE).id
        self._cube_qadr = m.jnt_qposadr[m.joint("cube").id]
        self._cube_body = m.body("cube").id
        self._mocap = {name: m.body_mocapid[m.body(name).id] for name in ("obstacle", "bin",
                                                                           "target")}
        arm_bodies = {m.body(lk.name).id for lk in robot.LINKS}
        self._arm_geoms = np.array([g for g in range(m.ngeom) if m.geom_bodyid[g] in arm_bodies])
        self._obstacle_geoms = np.array([m.geom("obstacle").id])
        self._renderers: dict[tuple[int, int], mujoco.Renderer] = {}
        self.task: tasks.TaskInstance | None = None
        self.collided = False  # any arm-obstacle contact since reset
        _LIVE.add(self)
        self.reset(0, tasks.REACH_AROUND)

    # ------------------------------------------------------------------ state and control
    def reset(self, seed: int = 0, task: str = tasks.REACH_AROUND,
              scene_seed: int | None = None, spread: float = 1.0) -> tasks.TaskInstance:
        """Place the arm and objects for `task` as drawn from `seed` (same seed, same scene);
        with scene_seed, the objects come from scene_seed and only the start pose from seed."""
        inst = tasks.sample(task, seed, scene_seed, spread)
        m, d = self.model, self.data
        mujoco.mj_resetData(m, d)
        d.qpos[self._qadr] = inst.q_start
        d.ctrl[self._act] = inst.q_start
        d.mocap_pos[self._mocap["obstacle"]] = inst.obstacle
        d.mocap_pos[self._mocap["bin"]] = inst.bin
        d.mocap_pos[self._mocap["target"]] = inst.target
        half = np.array([np.cos(inst.cube_yaw / 2), 0.0, 0.0, np.sin(inst.cube_yaw / 2)])
        d.qpos[self._cube_qadr:self._cube_qadr + 7] = np.concatenate([inst.cube, half])
        mujoco.mj_forward(m, d)
        self.task = inst
        self.collided = False
        return inst

    def set_position_targets(self, q: np.ndarray) -> None:
        """Servo set points (6,), clipped to the joint limits as a real servo's range would."""
        q = np.asarray(q, float)
        if q.shape != (len(robot.JOINT_NAMES),) or not np.all(np.isfinite(q)):
            raise ValueError(f"position targets must be 6 finite values, got {q!r}")
        self.data.ctrl[self._act] = np.clip(q, self._ctrl_lo, self._ctrl_hi)

    def step(self, duration_s: float,
             targets: Callable[[float], np.ndarray] | None = None) -> None:
        """Advance physics by duration_s (rounded to whole timesteps, at least one).

        targets: optional function of sim time giving position targets, applied before every
        physics step, e.g. a TrajectoryFollower's target or an expert plan, so set points move
        smoothly within the call instead of jumping once per call.
        """
        m, d = self.model, self.data
        steps = max(1, int(round(duration_s / m.opt.timestep)))
        for _ in range(steps):
            if targets is not None:
                self.set_position_targets(targets(d.time))
            mujoco.mj_step(m, d)
            if d.ncon and not self.collided:
                self.collided = bool(self._obstacle_contacts().any())
        # mj_step leaves poses from before its integration; refresh them so ee_position() and
        # rendered frames show the state joint_positions() reports.
        mujoco.mj_kinematics(m, d)
        mujoco.mj_camlight(m, d)

    def push(self, offset: np.ndarray) -> float:
        """Displace the joints by `offset` (6,) at once, velocities zeroed, clipped to the joint
        limits: a shove that the servos then recover from by tracking their set points, which
        are left as they were. Returns how far the gripper tip moved (m)."""
        offset = np.asarray(offset, float)
        if offset.shape != (len(robot.JOINT_NAMES),) or not np.all(np.isfinite(offset)):
            raise ValueError(f"push offset must be 6 finite values (rad), got {offset!r}")
        m, d = self.model, self.data
        tip = self.ee_position()
        q = np.clip(self.joint_positions() + offset, robot.lower_limits(), robot.upper_limits())
        d.qpos[self._qadr] = q
        d.qvel[self._dadr] = 0.0
        mujoco.mj_forward(m, d)
        return float(np.linalg.norm(self.ee_position() - tip))

    @property
    def time(self) -> float:
        return float(self.data.time)

    @property
    def timestep(self) -> float:
        return float(self.model.opt.timestep)

    def joint_positions(self) -> np.ndarray:
        return self.data.qpos[self._qadr].copy()

    def joint_velocities(self) -> np.ndarray:
        return self.data.qvel[self._dadr].copy()

    def ee_position(self) -> np.ndarray:
        """Gripper tip (site gripper_tip) in the base frame; robot.forward_kinematics agrees."""
        return self.data.site_xpos[self._tip].copy()

    def cube_position(self) -> np.ndarray:
        return self.data.xpos[self._cube_body].copy()

    # ------------------------------------------------------------------ contacts
    def _obstacle_contacts(self) -> np.ndarray:
        pairs = self.data.contact.geom[: self.data.ncon]
        hit_obstacle = np.isin(pairs, self._obstacle_geoms)
        hit_arm = np.isin(pairs, self._arm_geoms)
        return (hit_obstacle[:, 0] & hit_arm[:, 1]) | (hit_obstacle[:, 1] & hit_arm[:, 0])

    def collisions(self) -> list[tuple[str, str]]:
        """Current arm-obstacle contacts as (arm geom, obstacle geom) name pairs; [] if none."""
        pairs = self.data.contact.geom[: self.data.ncon][self._obstacle_contacts()]
        out = []
        for a, b in pairs:
            if a in self._obstacle_geoms:
                a, b = b, a
            out.append((self.model.geom(a).name, self.model.geom(b).name))
        return out

    # ------------------------------------------------------------------ rendering
    def render(self, camera: str = scene.FRONT_CAMERA, width: int = 224,
               height: int = 224) -> np.ndarray:
        """RGB image (height, width, 3) uint8 from a named camera ("front" or "wrist").

        One offscreen renderer per image size, kept for reuse: creating a GL context costs far
        more than a frame.
        """
        if gl.backend is None:
            raise RuntimeError(f"rendering unavailable: {gl.problem}")
        key = (int(width), int(height))
        renderer = self._renderers.get(key)
        if renderer is None:
            vis = self.model.vis.global_
            vis.offwidth, vis.offheight = max(vis.offwidth, key[0]), max(vis.offheight, key[1])
            try:
                renderer = mujoco.Renderer(self.model, height=key[1], width=key[0])
            except Exception as exc:  # GL errors come in many types; add what we know
                raise RuntimeError(f"cannot create a {gl.backend} renderer: {exc}"
                                   + (f" ({gl.problem})" if gl.problem else "")) from exc
            for flag in (mujoco.mjtRndFlag.mjRND_SHADOW, mujoco.mjtRndFlag.mjRND_REFLECTION):
                renderer.scene.flags[flag] = False
            self._renderers[key] = renderer
        try:
            renderer.update_scene(self.data, camera=camera)
            return renderer.render()
        finally:
            gl.release_current()  # the next call (or close) may come from another thread

    def close(self) -> None:
        """Free the GL contexts (also done at exit)."""
        for renderer in self._renderers.values():
            renderer.close()
        self._renderers.clear()

    def __enter__(self) -> ArmSim:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

