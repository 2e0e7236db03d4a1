"""Which frame a policy's action chunks live in: absolute joint targets, or offsets from the
joint positions the chunk was planned from.

A small net fitted on a few dozen start poses reproduces "stay where you are" poorly in absolute
targets: on reach_around (20 start poses in the data) its first step sat 0.09 rad (up to 0.17)
from the arm at start poses it never saw, and the executor then slews there. Relative to the
current joints, step 0 is ~0 everywhere and the net only learns the shape of the motion (as UMI
and pi0's relative actions).
Works on numpy arrays and torch tensors alike.
"""

from __future__ import annotations

from typing import Any

ACTION_FRAMES = ("absolute", "relative")


def current_joints(state: Any, action_dim: int) -> Any:
    """The joint positions a chunk is relative to: the newest observation's first action_dim
    state entries, (B, A) from state (B, S) or a history (B, T, S)."""
    current = state[:, -1] if state.ndim == 3 else state
    return current[:, :action_dim]


def to_frame(actions: Any, state: Any, frame: str) -> Any:
    """Absolute actions (B, H, A) -> the policy's frame, for the observations state."""
    if frame == "absolute":
        return actions
    return actions - current_joints(state, actions.shape[-1])[:, None, :]


def from_frame(chunks: Any, state: Any, frame: str) -> Any:
    """Sampled chunks (B, N, H, A) in the policy's frame -> absolute joint targets."""
    if frame == "absolute":
        return chunks
    return chunks + current_joints(state, chunks.shape[-1])[:, None, None, :]
