"""Data parallelism over ``torch.distributed`` ranks.

When a default process group is initialized (by ``torchrun`` plus :func:`init_from_env`, or by
the user's own code), every streamed pass over a data set — mean gradients, Hessian and
Gauss–Newton products, losses — is sharded by batch: rank r handles batches r, r + W, r + 2W, …
of the W ranks, and the example-weighted sums and the example counts are all-reduced. Every rank
then holds the same result, so the solvers run identically on all of them. Without a process
group (or with one rank) nothing changes.

What is sharded, and how:

- gradients, losses, Hessian and Gauss–Newton products (:mod:`geninf.functional`,
  :mod:`geninf.linalg`): batch shares, then one all-reduce per pass or product;
- selection statistics (:func:`geninf.select`): batch shares (the ``max_examples`` cut is taken on
  the global batch order), the weighted per-unit sums all-reduced once; a fresh seed
  (``seed=None``) is rank 0's, so every rank selects the same subset;
- scoring (:func:`geninf.score`, :func:`geninf.self_influence`): every rank solves for the same
  query vectors (the products inside are sharded), each rank computes the per-example gradients
  of its training batches and fills their columns, and the blocks are summed over ranks. Only rank
  0 writes an ``out`` file.

Use it with ``torchrun --nproc_per_node N -m geninf …``, or call the library inside your own
process group (``dist.init_process_group(...)`` first; every rank passes the same data in the
same batch order).

Backends: ``gloo`` on the CPU, ``nccl`` on GPUs (chosen by :func:`init_from_env`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import TypeVar

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = [
    "all_reduce_sum",
    "broadcast_int",
    "init_from_env",
    "is_main_process",
    "shard",
    "world",
]

T = TypeVar("T")


def world() -> tuple[int, int]:
    """``(rank, world_size)`` of the default process group, ``(0, 1)`` without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main_process() -> bool:
    return world()[0] == 0


def shard(items: Iterable[T]) -> Iterator[T]:
    """This rank's share of ``items``: every W-th item, starting at the rank."""
    rank, size = world()
    for i, item in enumerate(items):
        if i % size == rank:
            yield item


def all_reduce_sum(tensor: Tensor) -> Tensor:
    """Sum ``tensor`` over ranks in place (a no-op with one rank) and return it."""
    if world()[1] > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def broadcast_int(value: int) -> int:
    """Rank 0's ``value`` on every rank (``value`` itself with one rank): for choices such as a
    fresh random seed that every rank must share."""
    if world()[1] == 1:
        return value
    backend = dist.get_backend()
    device = torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else "cpu"
    t = torch.tensor([value], dtype=torch.int64, device=device)
    dist.broadcast(t, src=0)
    return int(t.item())


def init_from_env() -> bool:
    """Initialize the default process group from ``torchrun``'s environment variables.

    Returns True when a multi-process group is (now) initialized. Does nothing when
    ``WORLD_SIZE`` is unset or 1, or when a group already exists.
    """
    if not dist.is_available() or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend=backend)
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    return True
