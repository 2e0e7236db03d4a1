"""How a policy uses the hardware it runs on: TF32, bf16 autocast, torch.compile, threads.

Everything here is opt-in and per process, except TF32 on CUDA, which costs nothing in
accuracy that a policy's float32 weights could notice (a 10-bit mantissa in the matmul inputs,
float32 accumulation) and is what cuBLAS runs fastest.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from genpol.policies.base import Policy

#: sampling precisions: float32 (exact), bfloat16 (autocast: matmuls and convolutions in bf16)
PRECISIONS = ("float32", "bfloat16")


def set_threads(threads: int) -> int:
    """torch's intra-op threads (and inter-op threads, which torch lets a process set only
    before its first parallel work) to `threads`; 0 leaves torch's default (one per core).
    Returns the intra-op threads now in use."""
    if not isinstance(threads, int) or isinstance(threads, bool) or threads < 0:
        raise ValueError(f"threads must be a whole number >= 0 (0: torch's default), got "
                         f"{threads!r}")
    if threads > 0:
        torch.set_num_threads(threads)
        if torch.get_num_interop_threads() != threads:
            # torch refuses once parallel work ran; the intra-op threads are what count
            with contextlib.suppress(RuntimeError):
                torch.set_num_interop_threads(threads)
    return torch.get_num_threads()


def allow_tf32() -> None:
    """TF32 matmuls and convolutions on CUDA (Ampere and later); nothing on other devices."""
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True


def autocast_dtype(precision: str, device: torch.device | str) -> torch.dtype | None:
    """The autocast dtype for a sampling `precision` on `device`, None for float32; ValueError
    for an unknown precision or a GPU without bf16."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {list(PRECISIONS)}, got {precision!r}")
    if precision == "float32":
        return None
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError(f"precision bfloat16 needs a GPU with bf16 (Ampere or later); "
                         f"{torch.cuda.get_device_name(device)} has none: use float32")
    return torch.bfloat16


def check_compile(device: torch.device | str) -> None:
    """ValueError unless torch.compile is offered on `device` (CUDA only)."""
    kind = torch.device(device).type
    if kind != "cuda":
        raise ValueError(
            f"compile is for CUDA devices; on {kind} inductor builds C++ kernels for minutes at "
            "every load (165 s for the default flow policy on a 2-core host), longer than a "
            "policy swap may take: leave compile off")


def compile_policy(policy: Policy) -> list[str]:
    """torch.compile the policy's submodules in place (state_dict keys unchanged), on CUDA only;
    the names compiled. The sampling loop itself stays eager: its Python control flow (the
    scheduler, guidance, the generator) would break the graph at every step."""
    check_compile(policy.device)
    names = [name for name, child in policy.named_children() if name != "normalizer"
             and any(True for _ in child.parameters())]
    for name in names:
        getattr(policy, name).compile()
    return names


def accelerate(policy: Policy, precision: str = "float32", compile: bool = False) -> Policy:
    """Set `policy` up to sample fast on its device: TF32 on CUDA, autocast at `precision`
    (chunks still come back float32), torch.compile with `compile`. Returns the policy."""
    if policy.device.type == "cuda":
        allow_tf32()
    policy.autocast_dtype = autocast_dtype(precision, policy.device)
    if compile:
        compile_policy(policy)
    return policy
