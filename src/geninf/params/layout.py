"""The flat parameter layout shared by every part of geninf.

A model's parameter vector θ is the concatenation, in ``model.named_parameters()`` order, of every
parameter that requires grad, each flattened row-major. :class:`ParameterLayout` records that
order (names, shapes, offsets) so that flat vectors, name→tensor dicts and subsets of elements
can be converted into one another.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from math import prod

import torch
from torch import Tensor, nn

from ..errors import InputError, SubsetError

__all__ = ["ParameterLayout", "trainable_parameters"]


def trainable_parameters(model: nn.Module) -> dict[str, Tensor]:
    """Return ``{name: parameter}`` for every parameter of ``model`` that requires grad.

    Shared (tied) parameters appear once, under their first name, as in
    ``model.named_parameters()``.
    """
    if not isinstance(model, nn.Module):
        raise InputError(f"expected a torch.nn.Module, got {type(model).__name__}")
    return {name: p for name, p in model.named_parameters() if p.requires_grad}


@dataclass(frozen=True)
class ParameterLayout:
    """Names, shapes and flat offsets of a model's trainable parameters."""

    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]

    @classmethod
    def from_model(cls, model: nn.Module) -> ParameterLayout:
        params = trainable_parameters(model)
        if not params:
            raise SubsetError(
                f"{type(model).__name__} has no parameter that requires grad; "
                "there is nothing to compute influence for"
            )
        return cls.from_params(params)

    @classmethod
    def from_params(cls, params: Mapping[str, Tensor]) -> ParameterLayout:
        return cls(tuple(params), tuple(tuple(p.shape) for p in params.values()))

    @property
    def numels(self) -> tuple[int, ...]:
        return tuple(prod(s) for s in self.shapes)

    @property
    def offsets(self) -> tuple[int, ...]:
        """Start offset of each parameter in the flat vector (length ``len(names) + 1``)."""
        out = [0]
        for n in self.numels:
            out.append(out[-1] + n)
        return tuple(out)

    @property
    def size(self) -> int:
        """n, the total number of trainable elements."""
        return self.offsets[-1]

    def index(self, name: str) -> int:
        try:
            return self.names.index(name)
        except ValueError:
            raise SubsetError(
                f"no trainable parameter named {name!r}; known names: {_preview(self.names)}"
            ) from None

    def flatten(self, tensors: Mapping[str, Tensor]) -> Tensor:
        """Concatenate ``{name: tensor}`` (all names of the layout) into one flat vector."""
        missing = [n for n in self.names if n not in tensors]
        if missing:
            raise InputError(f"missing tensors for parameters {_preview(missing)}")
        return torch.cat([tensors[n].reshape(-1) for n in self.names])

    def unflatten(self, flat: Tensor) -> dict[str, Tensor]:
        """Split a flat vector of length n into ``{name: view with the parameter's shape}``."""
        if flat.dim() != 1 or flat.numel() != self.size:
            raise InputError(
                f"expected a 1-D tensor of length {self.size} (all trainable parameters), "
                f"got shape {tuple(flat.shape)}"
            )
        parts = torch.split(flat, list(self.numels))
        return {n: t.view(s) for n, t, s in zip(self.names, parts, self.shapes, strict=True)}

    def check_model(self, model: nn.Module, what: str = "subset") -> dict[str, Tensor]:
        """Return the model's trainable parameters, or raise if they do not match this layout."""
        params = trainable_parameters(model)
        other = ParameterLayout.from_params(params)
        if other != self:
            raise SubsetError(
                f"the {what} was built for another model: expected parameters "
                f"{_preview(self.names)} with {self.size} elements, the model has "
                f"{_preview(other.names)} with {other.size}; rebuild the {what} from this model"
            )
        return params


def _preview(names: tuple[str, ...] | list[str], k: int = 6) -> str:
    names = list(names)
    shown = ", ".join(repr(n) for n in names[:k])
    return f"[{shown}{', ...' if len(names) > k else ''}]"
