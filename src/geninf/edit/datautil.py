"""Data helpers of the editing functions: counting, chaining and mini-batching data sets."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor

from ..data import Batches, as_batches
from ..errors import DataError, InputError
from ..objective import Objective

__all__ = [
    "ChainedData",
    "check_distinct",
    "count_examples",
    "is_tensor_tuple",
    "training_batches",
]


def is_tensor_tuple(data: Any) -> bool:
    return isinstance(data, tuple) and bool(data) and all(isinstance(t, Tensor) for t in data)


def count_examples(
    objective: Objective, data: Any, name: str, batch_size: int | None, empty_hint: str = ""
) -> int:
    """Number of examples in ``data`` (an empty data set raises :class:`DataError`)."""
    if is_tensor_tuple(data) and data[0].dim() > 0 and data[0].shape[0] == 0:
        raise DataError(f"{name} is empty{empty_hint or '; pass at least one example'}")
    batches = as_batches(data, batch_size, name=name)
    if batches.tensors is not None:
        return int(batches.tensors[0].shape[0])
    total = sum(int(objective.num_examples(b)) for b in batches)
    if total == 0:
        raise DataError(f"{name} is empty{empty_hint or '; pass at least one example'}")
    return total


def check_distinct(retain_data: Any, forget_data: Any) -> None:
    """Refuse the same object (or identical tensors) as retained and forgotten data."""
    same = retain_data is forget_data
    if not same and is_tensor_tuple(retain_data) and is_tensor_tuple(forget_data):
        same = len(retain_data) == len(forget_data) and all(
            a.shape == b.shape and a.dtype == b.dtype and bool(torch.equal(a, b))
            for a, b in zip(retain_data, forget_data, strict=True)
        )
    if same:
        raise InputError(
            "retain_data and forget_data are the same data; retain_data must be the training "
            "set without the forget set"
        )


class ChainedData:
    """Re-iterable batches of several data sets, one after the other (their union)."""

    def __init__(self, *parts: Batches):
        self.parts = parts

    def __iter__(self) -> Iterator[Any]:
        for part in self.parts:
            yield from part

    def __len__(self) -> int:
        return sum(len(p) for p in self.parts)


def training_batches(
    data: Any, batch_size: int, generator: torch.Generator, name: str
) -> Iterator[tuple[Any, bool]]:
    """Endless mini-batches for a baseline: ``(batch, can_truncate)``.

    Tensor tuples are reshuffled every epoch with ``generator``; other data is cycled in its own
    order (a shuffling DataLoader shuffles with its own generator). ``can_truncate`` says whether
    the batch may be cut to fewer examples (tensor tuples only).
    """
    if is_tensor_tuple(data):
        n = int(data[0].shape[0])
        while True:
            order = torch.randperm(n, generator=generator)
            for lo in range(0, n, batch_size):
                idx = order[lo : lo + batch_size]
                yield tuple(t[idx.to(t.device)] for t in data), True
    batches = as_batches(data, batch_size, name=name)
    while True:
        for batch in batches:
            yield batch, False


def truncate(batch: tuple[Tensor, ...], count: int) -> tuple[Tensor, ...]:
    """The first ``count`` examples of a tensor-tuple batch."""
    return tuple(t[:count] for t in batch)
