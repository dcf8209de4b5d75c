"""Multi-process helpers: ``torchrun --nproc-per-node N -m snntorch_egru train ...``.

When ``WORLD_SIZE`` > 1 is set (torchrun sets it), :func:`setup` initialises
``torch.distributed`` with gloo on CPU and NCCL on CUDA; otherwise everything is a
single-process no-op. Metrics are summed across ranks with :func:`all_reduce_sum`;
only rank 0 writes files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, List

import torch
import torch.distributed as dist

__all__ = ["DistInfo", "setup", "cleanup", "all_reduce_sum", "broadcast_object"]


@dataclass
class DistInfo:
    """Rank, world size and local rank of this process (0, 1, 0 when not distributed)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup(device: str) -> DistInfo:
    """Initialise the process group from torchrun's environment (if any).

    Args:
        device: ``"cpu"`` (gloo) or ``"cuda"`` (NCCL, one GPU per local rank).
    """
    world = _env_int("WORLD_SIZE", "1", 1)
    if world <= 1:
        return DistInfo()
    if "RANK" not in os.environ:
        raise ValueError(
            f"environment variable WORLD_SIZE={world} is set but RANK is not; start multi-process "
            "runs with torchrun (which sets both), or unset WORLD_SIZE"
        )
    rank = _env_int("RANK", "0", 0)
    if rank >= world:
        raise ValueError(f"environment variable RANK={rank} must be less than WORLD_SIZE={world}")
    local_rank = _env_int("LOCAL_RANK", "0", 0)
    if not dist.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend)
    return DistInfo(rank, world, local_rank)


def _env_int(name: str, default: str, minimum: int) -> int:
    text = os.environ.get(name, default)
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"environment variable {name} must be an integer >= {minimum}, got {text!r}") from None
    if value < minimum:
        raise ValueError(f"environment variable {name} must be an integer >= {minimum}, got {text!r}")
    return value


def cleanup(info: DistInfo) -> None:
    """Destroy the process group created by :func:`setup`."""
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(values: List[float], info: DistInfo, device: torch.device) -> List[float]:
    """Sum a list of floats over all ranks (identity when not distributed)."""
    if not info.enabled:
        return [float(v) for v in values]
    t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


def broadcast_object(obj: Any, info: DistInfo) -> Any:
    """Rank 0's ``obj`` on every rank."""
    if not info.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(info: DistInfo) -> None:
    """Wait for every rank (no-op when not distributed)."""
    if info.enabled:
        dist.barrier()
