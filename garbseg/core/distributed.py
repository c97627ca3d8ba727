"""Several processes under ``torchrun``: joining the process group, who am I, summing across ranks.

Training, evaluation and prediction all share these few facts, so they live on the floor (not in
``train/``): each rank takes ``shard(items)`` of the work, counts are summed with ``all_reduce_sum``
(never averaged), and only ``is_main()`` writes shared files. Without torchrun (no ``WORLD_SIZE`` in
the environment) every helper answers as for one process and nothing is initialised.
"""

from __future__ import annotations

import os
from typing import Sequence, TypeVar

import numpy as np
import torch
import torch.distributed as dist

T = TypeVar("T")


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_from_env(device: str = "cpu") -> bool:
    """Join the process group torchrun describes (gloo on CPU, NCCL on CUDA); False when not launched so.

    Each rank on a GPU machine takes the GPU of its ``LOCAL_RANK``.
    """
    if not launched_by_torchrun():
        return False
    if dist.is_initialized():
        return True
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.set_device(local_rank())
    dist.init_process_group(backend="nccl" if cuda else "gloo")
    return True


def local_device(device: str) -> str:
    """``cuda`` becomes this rank's own GPU (``cuda:<LOCAL_RANK>``) under torchrun; others unchanged."""
    if device == "cuda" and launched_by_torchrun():
        return f"cuda:{local_rank()}"
    return device


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main() -> bool:
    return rank() == 0


def shard(items: Sequence[T]) -> list[T]:
    """This rank's share of ``items``: every ``world_size``-th one from its rank (disjoint, covering all)."""
    return list(items[rank()::world_size()])


def all_reduce_sum(array: np.ndarray) -> np.ndarray:
    """The element-wise sum of ``array`` over all ranks (itself for one process). Integers stay exact."""
    if not dist.is_initialized():
        return array
    tensor = torch.from_numpy(np.ascontiguousarray(array, dtype=np.int64 if array.dtype.kind in "iub"
                                                   else np.float64))
    if dist.get_backend() == "nccl":
        tensor = tensor.cuda()
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.cpu().numpy().astype(array.dtype if array.dtype.kind != "b" else np.int64)


def gather_to_main(obj: T) -> list[T] | None:
    """Every rank's ``obj`` (small, picklable) as a list in rank order on rank 0; None on the others."""
    if not dist.is_initialized():
        return [obj]
    parts = [None] * world_size() if is_main() else None
    dist.gather_object(obj, parts, dst=0)
    return parts


def broadcast_int(value: int) -> int:
    """Rank 0's ``value`` on every rank: one decision (e.g. how many epochs fit a budget) for all."""
    if not dist.is_initialized():
        return value
    tensor = torch.tensor([int(value)], dtype=torch.int64)
    if dist.get_backend() == "nccl":
        tensor = tensor.cuda()
    dist.broadcast(tensor, src=0)
    return int(tensor.item())


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
