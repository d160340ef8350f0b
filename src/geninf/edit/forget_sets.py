"""Choosing which training examples to forget: given indices, a seeded random fraction, or every
example of some sources (e.g. all deformed copies of a few source images).

Indices are positions in the training data, 0 … m − 1. Every function checks its input and
raises a one-line :class:`~geninf.errors.InputError` that says what to pass instead; every random
choice comes from a ``torch.Generator`` seeded with ``seed`` (the global RNG is never used).

Example:
    >>> import torch
    >>> from geninf.edit.forget_sets import random_forget_indices, split_forget
    >>> idx = random_forget_indices(100, 0.1, seed=0)
    >>> idx.numel()
    10
    >>> x, y = torch.randn(100, 3), torch.arange(100)
    >>> retain, forget = split_forget((x, y), idx)
    >>> retain[1].numel(), torch.equal(forget[1], idx)
    (90, True)
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import torch
from torch import Tensor

from .._seed import check_seed
from ..errors import InputError

__all__ = [
    "check_forget_indices",
    "random_forget_indices",
    "source_forget_indices",
    "split_forget",
]


def check_forget_indices(indices: Any, size: int, what: str = "forget indices") -> Tensor:
    """``indices`` as a sorted int64 tensor, checked: integers, distinct, in ``[0, size)``, and
    not all of them (something must be retained).

    Raises:
        InputError: a non-integer, duplicate or out-of-range entry, no entry, or every index.
    """
    try:
        values = torch.as_tensor(indices).reshape(-1)
    except (TypeError, ValueError, RuntimeError):
        raise InputError(
            f"{what}: expected a sequence of integer indices, got {type(indices).__name__}"
        ) from None
    if values.is_floating_point() or values.is_complex() or values.dtype == torch.bool:
        whole = values.is_floating_point() and bool((values == values.round()).all())
        if not whole:
            bad = values[values != values.round()] if values.is_floating_point() else values
            raise InputError(
                f"{what}: {bad[0].item()!r} is not an integer index; give integer positions in "
                f"[0, {size - 1}]"
            )
    values = values.to(torch.long)
    if values.numel() == 0:
        raise InputError(f"{what}: no index given; name at least one training example to forget")
    out = values[(values < 0) | (values >= size)]
    if out.numel():
        raise InputError(
            f"{what}: index {int(out[0])} is outside [0, {size - 1}] (the training set has "
            f"{size} examples)"
        )
    uniq, counts = torch.unique(values, return_counts=True)
    if bool((counts > 1).any()):
        raise InputError(
            f"{what}: index {int(uniq[counts > 1][0])} appears {int(counts.max())} times; "
            "indices must be distinct"
        )
    if uniq.numel() == size:
        raise InputError(
            f"{what}: every training example would be forgotten and nothing retained; train a "
            "new model instead"
        )
    return uniq


def random_forget_indices(num_train: int, fraction: Any, seed: int) -> Tensor:
    """``round(fraction · m)`` distinct indices (at least 1) drawn uniformly, sorted.

    Args:
        num_train: m, the number of training examples.
        fraction: the fraction to forget, strictly between 0 and 1 (e.g. 0.01 for 1%).
        seed: seed of the draw.

    Raises:
        InputError: a fraction ≤ 0, ≥ 1 or not a number; a bad seed; fewer than 2 examples.
    """
    ok = isinstance(fraction, numbers.Real) and not isinstance(fraction, bool)
    if not ok or not math.isfinite(float(fraction)) or not 0.0 < float(fraction) < 1.0:
        raise InputError(
            f"the forget fraction must be a number strictly between 0 and 1, got {fraction!r}; "
            "e.g. 0.01 forgets 1% of the training set"
        )
    m = int(num_train)
    if m < 2:
        raise InputError(f"random forgetting needs at least 2 training examples, got {m}")
    count = min(m - 1, max(1, round(float(fraction) * m)))
    generator = torch.Generator().manual_seed(check_seed(seed))
    return torch.sort(torch.randperm(m, generator=generator)[:count]).values


def source_forget_indices(sources: Tensor, num_sources: int, seed: int) -> Tensor:
    """Every example of ``num_sources`` sources drawn uniformly from those present, sorted.

    Args:
        sources: the source id of every training example (e.g. the source image of each
            deformed copy), an integer tensor of shape [m].
        num_sources: how many distinct sources to forget, at least 1 and fewer than present.
        seed: seed of the draw.

    Raises:
        InputError: non-integer or non-1-D ``sources``; a bad ``num_sources`` or seed.
    """
    if not isinstance(sources, Tensor) or sources.dim() != 1 or sources.is_floating_point():
        raise InputError("sources must be an integer tensor of shape [m], one id per example")
    present = torch.unique(sources)
    n = int(present.numel())
    ok = isinstance(num_sources, numbers.Integral) and not isinstance(num_sources, bool)
    if not ok or not 1 <= int(num_sources) < n:
        raise InputError(
            f"num_sources must be an integer in [1, {n - 1}] (the data has {n} sources), got "
            f"{num_sources!r}"
        )
    generator = torch.Generator().manual_seed(check_seed(seed))
    chosen = present[torch.randperm(n, generator=generator)[: int(num_sources)]]
    return torch.nonzero(torch.isin(sources, chosen)).flatten()


def split_forget(data: tuple[Tensor, ...], indices: Any) -> tuple[tuple[Tensor, ...], ...]:
    """``(retain, forget)``: the rows of every tensor of ``data`` outside / at ``indices``.

    Raises:
        InputError: ``data`` is not a tuple of tensors with the same first dimension; bad indices
            (see :func:`check_forget_indices`).
    """
    ok = isinstance(data, tuple | list) and bool(data) and all(isinstance(t, Tensor) for t in data)
    if not ok or len({int(t.shape[0]) for t in data}) != 1:
        raise InputError("data must be a tuple of tensors with the same number of rows")
    m = int(data[0].shape[0])
    idx = check_forget_indices(indices, m)
    mask = torch.zeros(m, dtype=torch.bool)
    mask[idx] = True
    retain = tuple(t[~mask.to(t.device)] for t in data)
    forget = tuple(t[mask.to(t.device)] for t in data)
    return retain, forget
