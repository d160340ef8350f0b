"""`ParameterSubset`: an explicit, immutable set of parameter elements of a model.

The elements are addressed by *flat indices* into θ, the concatenation in
``model.named_parameters()`` order of every parameter that requires grad, each flattened
row-major (see :class:`~geninf.params.layout.ParameterLayout`). Vectors "on the subset" (the
``delta`` of an influence estimate, ``gather`` results) are ordered like
:attr:`ParameterSubset.flat_indices`, i.e. ascending.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import InputError, SubsetError
from .layout import ParameterLayout, _preview

__all__ = ["ParameterSubset", "resolve_subset"]


class ParameterSubset:
    """A set of k elements of a model's trainable parameters (J in the maths, |J| = k).

    Build one with a constructor (:meth:`all`, :meth:`from_names`, :meth:`from_modules`,
    :meth:`from_masks`, :meth:`from_flat_indices`) or with :func:`geninf.select`. A subset is
    immutable and remembers the layout (names and shapes) of the model it was built for; using it
    with a model of another layout raises :class:`~geninf.errors.SubsetError`.

    Example:
        >>> import torch
        >>> model = torch.nn.Linear(3, 2)
        >>> subset = ParameterSubset.from_names(model, ["bias"])
        >>> len(subset), subset.flat_indices.tolist()
        (2, [6, 7])
    """

    __slots__ = ("_layout", "_indices", "_device_cache")

    def __init__(self, layout: ParameterLayout, flat_indices: Tensor, *, _checked: bool = False):
        if not _checked:
            flat_indices = _validate_indices(flat_indices, layout.size)
        self._layout = layout
        self._indices = flat_indices
        self._device_cache: dict[torch.device, Tensor] = {}

    # ------------------------------------------------------------------ constructors
    @classmethod
    def all(cls, model: nn.Module) -> ParameterSubset:
        """Every trainable element of ``model``."""
        layout = ParameterLayout.from_model(model)
        return cls(layout, torch.arange(layout.size), _checked=True)

    @classmethod
    def from_names(cls, model: nn.Module, names: Iterable[str]) -> ParameterSubset:
        """Every element of the named parameters (names as in ``model.named_parameters()``)."""
        if isinstance(names, str):
            names = [names]
        names = list(names)
        layout = ParameterLayout.from_model(model)
        if not names:
            raise SubsetError("no parameter names given; pass at least one name")
        offsets = layout.offsets
        parts = []
        for name in dict.fromkeys(names):
            i = layout.index(name)
            parts.append(torch.arange(offsets[i], offsets[i + 1]))
        return cls(layout, torch.sort(torch.cat(parts)).values, _checked=True)

    @classmethod
    def from_modules(
        cls, model: nn.Module, modules: Iterable[nn.Module | str] | nn.Module | str
    ) -> ParameterSubset:
        """Every trainable element of the given submodules (objects or dotted names)."""
        if isinstance(modules, nn.Module | str):
            modules = [modules]
        modules = list(modules)
        if not modules:
            raise SubsetError("no modules given; pass at least one submodule of the model")
        wanted: set[int] = set()
        for m in modules:
            if isinstance(m, str):
                try:
                    m = model.get_submodule(m)
                except AttributeError:
                    known = [n for n, _ in model.named_modules() if n]
                    raise SubsetError(
                        f"model has no submodule named {m!r}; known: {_preview(known)}"
                    ) from None
            if not isinstance(m, nn.Module):
                raise SubsetError(f"expected nn.Module or str, got {type(m).__name__}")
            wanted.update(id(p) for p in m.parameters())
        names = [n for n, p in model.named_parameters() if p.requires_grad and id(p) in wanted]
        if not names:
            raise SubsetError(
                "the given modules hold no trainable parameter of this model; "
                "pass submodules of the model itself (not copies) that have parameters"
            )
        return cls.from_names(model, names)

    @classmethod
    def from_masks(cls, model: nn.Module, masks: Mapping[str, Tensor]) -> ParameterSubset:
        """Elements where ``masks[name]`` is True; parameters without a mask are not selected."""
        layout = ParameterLayout.from_model(model)
        offsets = layout.offsets
        parts = []
        for name, mask in masks.items():
            i = layout.index(name)
            mask = torch.as_tensor(mask)
            if mask.dtype != torch.bool:
                raise SubsetError(f"mask for {name!r} must be a bool tensor, got {mask.dtype}")
            if tuple(mask.shape) != layout.shapes[i]:
                raise SubsetError(
                    f"mask for {name!r} has shape {tuple(mask.shape)}, "
                    f"the parameter has shape {layout.shapes[i]}"
                )
            parts.append(torch.nonzero(mask.reshape(-1).cpu()).reshape(-1) + offsets[i])
        idx = torch.cat(parts) if parts else torch.empty(0, dtype=torch.long)
        return cls(layout, torch.sort(idx).values)

    @classmethod
    def from_flat_indices(
        cls, model: nn.Module, indices: Sequence[int] | Tensor
    ) -> ParameterSubset:
        """Elements at the given flat indices (any order; duplicates are an error)."""
        layout = ParameterLayout.from_model(model)
        return cls(layout, torch.as_tensor(indices))

    # ------------------------------------------------------------------ properties
    @property
    def layout(self) -> ParameterLayout:
        return self._layout

    @property
    def flat_indices(self) -> Tensor:
        """The selected flat indices, sorted ascending (a copy; int64, on the CPU)."""
        return self._indices.clone()

    @property
    def num_total(self) -> int:
        """n, the number of trainable elements of the model."""
        return self._layout.size

    def __len__(self) -> int:
        return int(self._indices.numel())

    @property
    def is_all(self) -> bool:
        return len(self) == self._layout.size

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ParameterSubset):
            return NotImplemented
        return self._layout == other._layout and torch.equal(self._indices, other._indices)

    def __hash__(self) -> int:
        return hash((self._layout, len(self), tuple(self._indices[:8].tolist())))

    def __repr__(self) -> str:
        return (
            f"ParameterSubset({len(self)} of {self.num_total} elements, "
            f"{100.0 * len(self) / self.num_total:.3g}%, {len(self.names())} tensors)"
        )

    def indices_on(self, device: torch.device | str) -> Tensor:
        """The flat indices on ``device`` (cached)."""
        device = torch.device(device)
        if device not in self._device_cache:
            self._device_cache[device] = self._indices.to(device)
        return self._device_cache[device]

    def masks(self) -> dict[str, Tensor]:
        """``{name: bool tensor}`` for every trainable parameter (False where not selected)."""
        flat = torch.zeros(self._layout.size, dtype=torch.bool)
        flat[self._indices] = True
        return {n: t.clone() for n, t in self._layout.unflatten(flat).items()}

    def names(self) -> list[str]:
        """Names of the parameters that have at least one selected element."""
        offsets = self._layout.offsets
        counts = torch.bucketize(self._indices, torch.tensor(offsets[1:]), right=True)
        return [self._layout.names[i] for i in torch.unique(counts).tolist()]

    def summary(self) -> dict[str, dict[str, Any]]:
        """Per parameter: ``{"selected": int, "total": int, "fraction": float}``."""
        offsets = torch.tensor(self._layout.offsets)
        out = {}
        for i, name in enumerate(self._layout.names):
            lo, hi = int(offsets[i]), int(offsets[i + 1])
            sel = int(((self._indices >= lo) & (self._indices < hi)).sum())
            out[name] = {"selected": sel, "total": hi - lo, "fraction": sel / (hi - lo)}
        return out

    def union(self, other: ParameterSubset) -> ParameterSubset:
        self._check_same_layout(other)
        idx = torch.unique(torch.cat([self._indices, other._indices]))
        return ParameterSubset(self._layout, idx, _checked=True)

    __or__ = union

    # ------------------------------------------------------------------ vector maps
    def gather(self, params: nn.Module | Mapping[str, Tensor] | Tensor) -> Tensor:
        """The selected elements of ``params`` as a 1-D tensor, ordered like ``flat_indices``.

        ``params`` is a model of this layout, a ``{name: tensor}`` dict with every name of the
        layout, or a flat vector of length n.
        """
        flat = self._as_flat(params)
        return flat.index_select(0, self.indices_on(flat.device))

    def scatter_flat(self, delta: Tensor) -> Tensor:
        """A length-n vector that holds ``delta`` at the selected indices and zeros elsewhere."""
        delta = self._check_delta(delta)
        out = torch.zeros(self._layout.size, dtype=delta.dtype, device=delta.device)
        out.index_copy_(0, self.indices_on(delta.device), delta)
        return out

    def scatter(self, delta: Tensor) -> dict[str, Tensor]:
        """``{name: tensor shaped like the parameter}`` with ``delta`` placed on the subset."""
        return {n: t.clone() for n, t in self._layout.unflatten(self.scatter_flat(delta)).items()}

    def apply(
        self, model: nn.Module, delta: Tensor, *, inplace: bool = False, alpha: float = 1.0
    ) -> nn.Module:
        """Return ``model`` with ``θ_J ← θ_J + alpha · delta`` (an edited deep copy by default).

        With ``inplace=True`` the given model itself is changed and returned.
        """
        params = self._layout.check_model(model)
        delta = self._check_delta(delta)
        target = model if inplace else copy.deepcopy(model)
        tparams = params if inplace else {n: p for n, p in target.named_parameters()}
        offsets = self._layout.offsets
        with torch.no_grad():
            for i, name in enumerate(self._layout.names):
                lo, hi = offsets[i], offsets[i + 1]
                sel = (self._indices >= lo) & (self._indices < hi)
                if not bool(sel.any()):
                    continue
                p = tparams[name]
                local = (self._indices[sel] - lo).to(p.device)
                upd = delta[sel.to(delta.device)].to(device=p.device, dtype=p.dtype)
                p.view(-1).index_add_(0, local, upd, alpha=alpha)
        return target

    # ------------------------------------------------------------------ helpers
    def _as_flat(self, params: nn.Module | Mapping[str, Tensor] | Tensor) -> Tensor:
        if isinstance(params, nn.Module):
            return self._layout.flatten(self._layout.check_model(params)).detach()
        if isinstance(params, Mapping):
            return self._layout.flatten(params)
        if isinstance(params, Tensor):
            if params.dim() != 1 or params.numel() != self._layout.size:
                raise SubsetError(
                    f"expected a flat vector of length {self._layout.size}, "
                    f"got shape {tuple(params.shape)}"
                )
            return params
        raise InputError(
            f"cannot gather from {type(params).__name__}; pass a model, dict or tensor"
        )

    def _check_delta(self, delta: Tensor) -> Tensor:
        if not isinstance(delta, Tensor):
            raise InputError(f"delta must be a torch.Tensor, got {type(delta).__name__}")
        if delta.dim() != 1 or delta.numel() != len(self):
            raise SubsetError(
                f"delta must be a 1-D tensor of length {len(self)} (the subset size), "
                f"got shape {tuple(delta.shape)}"
            )
        return delta

    def _check_same_layout(self, other: ParameterSubset) -> None:
        if self._layout != other._layout:
            raise SubsetError("the two subsets belong to models with different parameter layouts")


def resolve_subset(
    model: nn.Module, subset: ParameterSubset | None, *, whole_model_method: str | None = None
) -> ParameterSubset:
    """The subset a method works on: ``subset`` checked against ``model``, or all parameters.

    ``whole_model_method`` names a method that always moves every parameter; a strict subset is
    then refused.
    """
    if subset is None:
        return ParameterSubset.all(model)
    if not isinstance(subset, ParameterSubset):
        raise InputError(
            f"subset must be a ParameterSubset (see geninf.select), got {type(subset).__name__}"
        )
    subset.layout.check_model(model)
    if whole_model_method is not None and not subset.is_all:
        raise InputError(
            f"method={whole_model_method!r} moves every parameter, so it uses every parameter; "
            "drop subset= or use method='gif', 'freezing' or 'projecting' for a subset"
        )
    return subset


def _validate_indices(indices: Tensor, size: int) -> Tensor:
    indices = torch.as_tensor(indices)
    if indices.numel() == 0:
        raise SubsetError("the subset is empty; select at least one parameter element")
    if indices.is_floating_point() or indices.dtype == torch.bool:
        raise SubsetError(f"flat indices must be integers, got dtype {indices.dtype}")
    indices = indices.reshape(-1).to(device="cpu", dtype=torch.long)
    if indices.numel() == 0:
        raise SubsetError("the subset is empty; select at least one parameter element")
    lo, hi = int(indices.min()), int(indices.max())
    if lo < 0 or hi >= size:
        raise SubsetError(
            f"flat index out of range: got values in [{lo}, {hi}], valid range is [0, {size - 1}]"
        )
    sorted_idx = torch.sort(indices).values
    if sorted_idx.numel() > 1 and bool((sorted_idx[1:] == sorted_idx[:-1]).any()):
        dup = int(sorted_idx[1:][sorted_idx[1:] == sorted_idx[:-1]][0])
        raise SubsetError(f"duplicate flat index {dup}; each element may be selected once")
    return sorted_idx
