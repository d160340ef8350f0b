"""Layer groups: a layer's trainable parameters split into units, and the statistic that ranks them.

The rules that build groups for each layer type are in :mod:`geninf.selection.rules`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from math import prod

import torch
from torch import Tensor, nn

__all__ = [
    "ElementValues",
    "InProjection",
    "LayerGroup",
    "Member",
    "OutputUnits",
    "Statistic",
    "TokenUse",
    "element_group",
    "elementwise",
    "rows",
    "transposed",
]

Spread = Callable[[Tensor], Tensor]


# ---------------------------------------------------------------- statistics (what ranks units)
@dataclass(frozen=True, eq=False)
class OutputUnits:
    """Units are output features of ``module``; ``unit_dims(module, output)`` names their dims."""

    module: nn.Module
    unit_dims: Callable[[nn.Module, Tensor], tuple[int, ...]]
    output_index: int | None = None

    def describe(self, gradients: bool) -> str:
        return "|mean ∂ℓ/∂output|" if gradients else "|mean output|"


@dataclass(frozen=True, eq=False)
class TokenUse:
    """Units are embedding rows; ``weight`` is the (global) name of the embedding matrix."""

    module: nn.Module
    weight: str

    def describe(self, gradients: bool) -> str:
        return "‖mean ∂ℓ/∂row‖" if gradients else "lookups × ‖row‖"


@dataclass(frozen=True, eq=False)
class InProjection:
    """Units are the q/k/v projection features of a ``MultiheadAttention``."""

    module: nn.MultiheadAttention
    bias: str | None

    def describe(self, gradients: bool) -> str:
        return "|mean ∂ℓ/∂projection|" if gradients else "|mean projection|"


@dataclass(frozen=True, eq=False)
class ElementValues:
    """Every element is a unit, ranked by |θ_i| or |mean ∂ℓ/∂θ_i| (needs no hook)."""

    def describe(self, gradients: bool) -> str:
        return "|mean ∂ℓ/∂θ|" if gradients else "|θ|"


Statistic = OutputUnits | TokenUse | InProjection | ElementValues


# ---------------------------------------------------------------- groups
@dataclass(frozen=True, eq=False)
class Member:
    """One trainable parameter inside a group, covering units ``first_unit .. +num_units``.

    ``spread`` maps a ``(num_units,)`` tensor of per-unit values to a tensor broadcastable to
    ``shape`` that holds, at each element, the value of the unit the element belongs to.
    """

    name: str
    shape: tuple[int, ...]
    first_unit: int
    num_units: int
    is_bias: bool
    spread: Spread

    @property
    def numel(self) -> int:
        return prod(self.shape)

    @property
    def per_unit(self) -> int:
        return self.numel // self.num_units

    def mask(self, unit_mask: Tensor) -> Tensor:
        """Bool mask of the parameter's shape: the elements of the units set in ``unit_mask``."""
        part = unit_mask[self.first_unit : self.first_unit + self.num_units]
        return self.spread(part).expand(self.shape).reshape(self.shape).clone()


@dataclass(frozen=True, eq=False)
class LayerGroup:
    """The trainable parameters of one layer under one rule (one budget).

    Attributes:
        name: the module's name in ``model.named_modules()`` (``"(root)"`` for the model itself).
        module_type: the module's class name (for display only; rules dispatch on isinstance).
        rule: what a unit is, in words (e.g. ``"output channels"``, ``"elements"``).
        members: the parameters of the group, each covering a range of units.
        num_units: number of units.
        statistic: which statistic ranks the units.
        normalization: True for normalization layers (see ``exclude_normalization``).
    """

    name: str
    module_type: str
    rule: str
    members: tuple[Member, ...]
    num_units: int
    statistic: Statistic
    normalization: bool = False

    @property
    def numel(self) -> int:
        """The group's size (the "weight.numel + bias.numel" of the budget formula)."""
        return sum(m.numel for m in self.members)

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.members)

    def unit_sizes(self) -> Tensor:
        """Number of elements of each unit (int64, CPU)."""
        sizes = torch.zeros(self.num_units, dtype=torch.long)
        for m in self.members:
            sizes[m.first_unit : m.first_unit + m.num_units] += m.per_unit
        return sizes

    def as_elements(self, note: str) -> LayerGroup:
        """The same parameters under the element rule (the fallback), ``note`` saying why."""
        return element_group(
            self.name, self.module_type, self.param_shapes(), note, self.normalization
        )

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        return {m.name: m.shape for m in self.members}


def element_group(
    name: str,
    module_type: str,
    shapes: dict[str, tuple[int, ...]],
    note: str = "",
    normalization: bool = False,
) -> LayerGroup:
    members, first = [], 0
    for pname, shape in shapes.items():
        n = prod(shape)
        members.append(Member(pname, shape, first, n, False, elementwise(shape)))
        first += n
    rule = "elements" + (f" ({note})" if note else "")
    return LayerGroup(
        name, module_type, rule, tuple(members), first, ElementValues(), normalization
    )


# ---------------------------------------------------------------- spreads and unit dims
def rows(shape: tuple[int, ...]) -> Spread:
    tail = (1,) * (len(shape) - 1)
    return lambda v: v.view(-1, *tail)


def elementwise(shape: tuple[int, ...]) -> Spread:
    return lambda v: v.view(shape)


def transposed(shape: tuple[int, ...], groups: int) -> Spread:
    """ConvTranspose weight (in, out/groups, *k): output channel g·(out/groups)+j ↔ [g-block, j]."""
    in_ch, out_per, kernel = shape[0], shape[1], shape[2:]
    full = (groups, in_ch // groups, out_per, *kernel)
    ones = (1,) * len(kernel)
    return lambda v: v.view(groups, 1, out_per, *ones).expand(full).reshape(shape)
