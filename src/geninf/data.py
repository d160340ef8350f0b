"""Data sets as geninf sees them: something that yields the same batches every time.

``data`` arguments accept

- a tuple ``(inputs, targets)`` of tensors with equal first dimension — split into batches of
  ``batch_size`` examples in order;
- a map-style ``torch.utils.data.Dataset`` — wrapped in a non-shuffling ``DataLoader``;
- any re-iterable of batches (a ``DataLoader``, a list of batches). A loader that shuffles is
  refused for Hessian data because two passes would see different batches.

Losses over a data set are always the mean over all its examples, whatever the batching: each
batch's mean loss is weighted by its number of examples (``Objective.num_examples``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, IterableDataset, RandomSampler, SequentialSampler

from .errors import DataError, DeterminismError, InputError

__all__ = ["DEFAULT_BATCH_SIZE", "Batches", "as_batches", "stratified_sample"]

DEFAULT_BATCH_SIZE = 256


class Batches:
    """A re-iterable view of a data set as batches (see the module docstring)."""

    def __init__(self, data: Any, batch_size: int | None = None, *, name: str = "data"):
        self.name = name
        self.batch_size = int(batch_size or DEFAULT_BATCH_SIZE)
        if self.batch_size <= 0:
            raise DataError(f"batch_size must be positive, got {batch_size}")
        self._tensors: tuple[Any, ...] | None = None
        self._iterable: Iterable[Any] | None = None
        if isinstance(data, tuple) and data and all(isinstance(t, Tensor) for t in data):
            self._tensors = _check_tensor_tuple(data, name)
        elif isinstance(data, Dataset) and not isinstance(data, IterableDataset):
            if len(data) == 0:  # type: ignore[arg-type]
                raise DataError(f"{name} is an empty Dataset; pass at least one example")
            self._iterable = DataLoader(data, batch_size=self.batch_size, shuffle=False)
        elif isinstance(data, Iterable) and not isinstance(data, str | bytes | Tensor):
            if iter(data) is data:
                raise DataError(
                    f"{name} is a one-shot iterator (e.g. a generator); geninf passes over the "
                    "data several times: pass a list of batches, a DataLoader or a tensor tuple"
                )
            self._iterable = data
        else:
            raise DataError(
                f"{name} must be an (inputs, targets) tuple of tensors, a Dataset, or a "
                f"re-iterable of batches such as a DataLoader; got {type(data).__name__}"
            )

    @property
    def tensors(self) -> tuple[Any, ...] | None:
        """The underlying ``(inputs, targets, ...)`` tuple when the data was given as tensors."""
        return self._tensors

    def __len__(self) -> int:
        """Number of batches."""
        if self._tensors is not None:
            n = self._tensors[0].shape[0]
            return -(-n // self.batch_size)
        try:
            return len(self._iterable)  # type: ignore[arg-type]
        except TypeError:
            return sum(1 for _ in self._iterable)  # type: ignore[union-attr]

    def __iter__(self) -> Iterator[Any]:
        if self._tensors is not None:
            n = self._tensors[0].shape[0]
            for lo in range(0, n, self.batch_size):
                yield tuple(t[lo : lo + self.batch_size] for t in self._tensors)
            return
        count = 0
        for batch in self._iterable:  # type: ignore[union-attr]
            count += 1
            yield batch
        if count == 0:
            raise DataError(f"{self.name} yielded no batch; pass a non-empty data set")

    def check_deterministic(self) -> None:
        """Refuse loaders whose order changes between passes (shuffling samplers)."""
        loader = self._iterable
        if isinstance(loader, DataLoader):
            sampler = loader.batch_sampler.sampler if loader.batch_sampler is not None else None
            sampler = sampler if sampler is not None else loader.sampler
            if (
                isinstance(sampler, RandomSampler)
                or not isinstance(sampler, SequentialSampler | type(None))
                and _looks_random(sampler)
            ):
                raise DeterminismError(
                    f"{self.name} is a DataLoader that shuffles (its sampler is "
                    f"{type(sampler).__name__}); Hessian products need the same batches on every "
                    "pass: build the loader with shuffle=False"
                )


def as_batches(data: Any, batch_size: int | None = None, *, name: str = "data") -> Batches:
    """Wrap ``data`` (see the module docstring) as :class:`Batches`; ``Batches`` pass through."""
    if isinstance(data, Batches):
        return data
    return Batches(data, batch_size, name=name)


def _check_tensor_tuple(data: tuple[Any, ...], name: str) -> tuple[Tensor, ...]:
    lengths = {int(t.shape[0]) if t.dim() > 0 else -1 for t in data}
    if -1 in lengths:
        raise DataError(f"{name}: every tensor needs a first (example) dimension; got a scalar")
    if len(lengths) != 1:
        raise DataError(
            f"{name}: tensors have different numbers of examples {sorted(lengths)}; "
            "inputs and targets must have the same first dimension"
        )
    if lengths.pop() == 0:
        raise DataError(f"{name} is empty; pass at least one example")
    return tuple(data)


def _looks_random(sampler: Any) -> bool:
    return type(sampler).__name__.lower().startswith(("random", "weightedrandom", "subsetrandom"))


def num_examples_default(batch: Any) -> int:
    """Number of examples in a batch: the first dimension of its first tensor."""
    if isinstance(batch, Tensor):
        return int(batch.shape[0])
    if isinstance(batch, dict):
        for v in batch.values():
            if isinstance(v, Tensor) and v.dim() > 0:
                return int(v.shape[0])
    if isinstance(batch, tuple | list):
        for v in batch:
            if isinstance(v, Tensor) and v.dim() > 0:
                return int(v.shape[0])
            if isinstance(v, dict | tuple | list):
                return num_examples_default(v)
    raise DataError(
        f"cannot tell how many examples a batch of type {type(batch).__name__} holds; "
        "give your objective a num_examples(batch) method"
    )


def to_device(batch: Any, device: torch.device) -> Any:
    """Move every tensor in a (nested) batch to ``device``."""
    if isinstance(batch, Tensor):
        return batch.to(device)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, tuple | list):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


def stratified_sample(targets: Tensor, size: int, *, generator: torch.Generator) -> Tensor:
    """Pick ``size`` indices keeping class proportions (largest-remainder rounding).

    Returns all indices (shuffled) when ``size >= len(targets)``.

    Raises:
        InputError: ``size`` is not positive.
    """
    n = int(targets.shape[0])
    if size <= 0:
        raise InputError(f"the sample size must be positive, got {size}")
    if size >= n:
        return _shuffle(torch.arange(n), generator)
    classes, counts = torch.unique(targets, return_counts=True)
    exact = counts.double() * size / n
    quota = exact.floor().long()
    remainder = size - int(quota.sum())
    order = torch.argsort(exact - quota.double(), descending=True, stable=True)
    quota[order[:remainder]] += 1
    chosen = []
    for c, q in zip(classes.tolist(), quota.tolist(), strict=True):
        members = torch.nonzero(targets == c).flatten()
        chosen.append(members[torch.randperm(members.numel(), generator=generator)[:q]])
    return _shuffle(torch.cat(chosen), generator)


def _shuffle(indices: Tensor, generator: torch.Generator) -> Tensor:
    return indices[torch.randperm(indices.numel(), generator=generator)]
