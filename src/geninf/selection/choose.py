"""Turning a group's budget and unit scores into bool masks over its parameters (method.md §5)."""

from __future__ import annotations

import torch
from torch import Tensor

from .groups import LayerGroup

__all__ = ["budget", "choose_random", "choose_ranked", "empty_masks"]


def budget(ratio: float, group: LayerGroup) -> int:
    """``int(ratio · group size)``, the per-layer budget of the authors' code (rounds down)."""
    return int(ratio * group.numel)


def empty_masks(group: LayerGroup) -> dict[str, Tensor]:
    return {m.name: torch.zeros(m.shape, dtype=torch.bool) for m in group.members}


def choose_ranked(
    group: LayerGroup, scores: Tensor, count: int, descending: bool, generator: torch.Generator
) -> dict[str, Tensor]:
    """Whole units in rank order while they fit in ``count``, then random weights of the next.

    Units are sorted by ``scores`` (stable: ties keep unit order). The first k units whose sizes
    add up to at most ``count`` are taken whole (all their weights and bias); the ``count - size``
    elements left over are drawn uniformly (with ``generator``) from the weights of the next unit
    in the ranking, and only if those run out from its bias.
    """
    if count <= 0:
        return empty_masks(group)
    order = torch.sort(scores, descending=descending, stable=True).indices
    cum = torch.cumsum(group.unit_sizes()[order], 0)
    k = int(torch.searchsorted(cum, torch.tensor([count]), right=True))
    unit_mask = torch.zeros(group.num_units, dtype=torch.bool)
    unit_mask[order[:k]] = True
    masks = {m.name: m.mask(unit_mask) for m in group.members}
    rest = count - (int(cum[k - 1]) if k else 0)
    if rest > 0 and k < group.num_units:
        _add_partial_unit(group, int(order[k]), rest, masks, generator)
    return masks


def _add_partial_unit(
    group: LayerGroup, unit: int, count: int, masks: dict[str, Tensor], generator: torch.Generator
) -> None:
    onehot = torch.zeros(group.num_units, dtype=torch.bool)
    onehot[unit] = True
    weights, biases = [], []
    for m in group.members:
        if m.first_unit <= unit < m.first_unit + m.num_units:
            local = torch.nonzero(m.mask(onehot).reshape(-1)).reshape(-1)
            (biases if m.is_bias else weights).append((m.name, local))
    n_weights = sum(len(idx) for _, idx in weights)
    if count <= n_weights:
        _pick(weights, count, masks, generator)
    else:
        _pick(weights, n_weights, masks, generator)
        _pick(biases, count - n_weights, masks, generator)


def _pick(
    candidates: list[tuple[str, Tensor]],
    count: int,
    masks: dict[str, Tensor],
    generator: torch.Generator,
) -> None:
    """Mark ``count`` of the candidate elements, drawn uniformly without replacement."""
    total = sum(len(idx) for _, idx in candidates)
    if count <= 0 or total == 0:
        return
    chosen = torch.randperm(total, generator=generator)[:count]
    _mark(candidates, chosen, masks)


def _mark(candidates: list[tuple[str, Tensor]], positions: Tensor, masks: dict[str, Tensor]):
    lo = 0
    for name, idx in candidates:
        hi = lo + len(idx)
        sel = positions[(positions >= lo) & (positions < hi)] - lo
        if sel.numel():
            masks[name].view(-1)[idx[sel]] = True
        lo = hi


def choose_random(group: LayerGroup, count: int, generator: torch.Generator) -> dict[str, Tensor]:
    """``count`` elements of the group drawn uniformly without replacement."""
    masks = empty_masks(group)
    if count <= 0:
        return masks
    candidates = [(m.name, torch.arange(m.numel)) for m in group.members]
    chosen = torch.randperm(group.numel, generator=generator)[:count]
    _mark(candidates, chosen, masks)
    return masks
