"""Top-k helpful and harmful training examples per query (largest / smallest scores)."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

from ..errors import InputError

__all__ = ["TopK", "top_k"]


class TopK(NamedTuple):
    """The k most helpful and most harmful training examples per query.

    ``helpful`` holds the indices of the k largest scores (largest first), ``harmful`` those of
    the k smallest (most negative first), whatever their sign; ``*_scores`` the scores. Shapes
    ``[n_query, k]`` for a score matrix, ``[k]`` for a vector.
    """

    helpful: Tensor
    helpful_scores: Tensor
    harmful: Tensor
    harmful_scores: Tensor


def top_k(scores: Tensor | np.ndarray, k: int, *, block_rows: int = 1024) -> TopK:
    """Top-k helpful and harmful training examples of each row of ``scores``.

    Args:
        scores: ``[n_query, n_train]`` (e.g. from :func:`score`, memory-mapped or not) or
            ``[n_train]`` (e.g. self-influence).
        k: how many of each, 1 ≤ k ≤ n_train.
        block_rows: rows read at a time (bounds memory for memory-mapped matrices).

    Example:
        >>> top_k(torch.tensor([0.5, -2.0, 3.0, 0.1]), 2).helpful.tolist()
        [2, 0]
    """
    scores = torch.as_tensor(scores)
    if scores.dim() not in (1, 2) or not scores.is_floating_point():
        raise InputError(
            f"scores must be a 1-D or 2-D float tensor, got shape {tuple(scores.shape)} "
            f"({scores.dtype})"
        )
    n = scores.shape[-1]
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= n:
        raise InputError(
            f"k must be an integer between 1 and {n} (the training examples), got {k!r}"
        )
    if scores.dim() == 1:
        hi, lo = scores.topk(k), scores.topk(k, largest=False)
        return TopK(hi.indices, hi.values, lo.indices, lo.values)
    block_rows = _positive_int(block_rows, "block_rows")
    parts = []
    for start in range(0, scores.shape[0], block_rows):
        rows = scores[start : start + block_rows]
        parts.append((rows.topk(k, dim=1), rows.topk(k, dim=1, largest=False)))
    if not parts:
        empty = torch.empty(0, k, dtype=torch.long)
        return TopK(empty, empty.to(scores.dtype), empty, empty.to(scores.dtype))
    return TopK(
        torch.cat([h.indices for h, _ in parts]),
        torch.cat([h.values for h, _ in parts]),
        torch.cat([lo.indices for _, lo in parts]),
        torch.cat([lo.values for _, lo in parts]),
    )


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(f"{name} must be a positive integer, got {value!r}")
    return value
