"""The obstacle problem: a planar point robot must pass a disc to reach a goal above it.

Demonstrations go around the left or the right side, 50/50; a policy that averages them drives
straight into the disc. Observation: the robot's position. Action: a chunk of future positions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ObstacleTask:
    obstacle: tuple[float, float] = (0.0, 0.0)
    radius: float = 0.4
    goal: tuple[float, float] = (0.0, 1.2)
    start_x: tuple[float, float] = (-0.15, 0.15)
    start_y: tuple[float, float] = (-1.3, -1.1)
    demo_steps: int = 40      # steps from start to goal
    hold_steps: int = 8       # steps holding at the goal after arrival
    swing: tuple[float, float] = (0.6, 0.7)  # sideways amplitude of a demonstration
    swerve_out: tuple[float, float] = (0.15, 0.38)  # path fraction over which it swerves out
    swerve_in: tuple[float, float] = (0.62, 1.0)  # ... and back in to the goal
    noise: float = 0.004
    goal_tolerance: float = 0.1

    def sample_starts(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return np.stack([rng.uniform(*self.start_x, n), rng.uniform(*self.start_y, n)], 1)

    def expert_path(self, start: np.ndarray, side: int, rng: np.random.Generator) -> np.ndarray:
        """Positions p_0..p_T: a straight trunk shared by both modes, a swerve to `side`
        (-1 left, +1 right) past the disc, then in to the goal.

        The trunk matters: while the position says nothing about the side, a point estimate can
        only average the two swerves, which is the failure this benchmark exists to show.
        """
        s = np.linspace(0.0, 1.0, self.demo_steps + 1)
        amp = rng.uniform(*self.swing)
        lateral = _smoothstep(s, *self.swerve_out) * (1 - _smoothstep(s, *self.swerve_in))
        x = start[0] * (1 - _smoothstep(s, 0.0, self.swerve_out[0])) + side * amp * lateral
        y = start[1] + (self.goal[1] - start[1]) * s
        path = np.stack([x, y], 1) + rng.normal(0, self.noise, (len(s), 2))
        path[0], path[-1] = start, self.goal
        return path

    def demonstrations(self, n: int, seed: int) -> tuple[list[tuple[np.ndarray, np.ndarray]],
                                                         np.ndarray]:
        """n episodes of (states, actions) with action_t = p_{t+1}, and each episode's side."""
        rng = np.random.default_rng(seed)
        # Each start is demonstrated once to each side: the split is exactly 50/50 wherever the
        # robot starts, so no start position hints at a side.
        starts = np.repeat(self.sample_starts((n + 1) // 2, rng), 2, axis=0)[:n]
        sides = np.tile([-1, 1], (n + 1) // 2)[:n]
        episodes = []
        for start, side in zip(starts, sides, strict=True):
            path = self.expert_path(start, int(side), rng)
            held = np.concatenate([path, np.repeat(path[-1:], self.hold_steps, 0)])
            states, actions = held[:-1], held[1:]
            if self.collides(held).any():
                raise AssertionError("an expert demonstration touches the obstacle")
            episodes.append((states.astype(np.float32), actions.astype(np.float32)))
        return episodes, sides

    def segment_distance(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Distance from the obstacle centre to segments a->b (arrays (..., 2))."""
        c = np.asarray(self.obstacle)
        ab = b - a
        t = np.clip(((c - a) * ab).sum(-1) / np.maximum((ab * ab).sum(-1), 1e-12), 0, 1)
        closest = a + t[..., None] * ab
        return np.linalg.norm(closest - c, axis=-1)

    def collides(self, path: np.ndarray) -> np.ndarray:
        """Per segment of a path (T, 2): does it touch the disc?"""
        return self.segment_distance(path[:-1], path[1:]) < self.radius

    def side_of(self, path: np.ndarray) -> int:
        """-1 if the path passes the obstacle on the left, +1 on the right (by its x beside it)."""
        band = np.abs(path[:, 1] - self.obstacle[1]) < self.radius
        xs = path[band, 0] if band.any() else path[:, 0]
        return -1 if float(np.mean(xs - self.obstacle[0])) < 0 else 1


def _smoothstep(s: np.ndarray, a: float, b: float) -> np.ndarray:
    u = np.clip((s - a) / (b - a), 0.0, 1.0)
    return u * u * (3 - 2 * u)
