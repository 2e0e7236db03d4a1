"""Chunk execution math, numpy only (no torch, no rclpy) so the executor node starts fast.

The executor node wraps ChunkExecutor: add_chunk per planner chunk, set_measured per
/joint_states, tick at rate_hz, publish the Command.
"""

from genpol.control.chunk import ChunkResult
from genpol.control.config import ExecutorConfig
from genpol.control.executor import ChunkExecutor, Command

__all__ = ["ChunkExecutor", "ChunkResult", "Command", "ExecutorConfig"]
