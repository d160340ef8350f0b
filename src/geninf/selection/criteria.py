"""The selection criteria (method.md §5) as a ``str`` Enum."""

from __future__ import annotations

from enum import Enum
from typing import Any

from .._choices import parse_choice

__all__ = ["Criterion"]


class Criterion(str, Enum):
    """How :func:`geninf.select` chooses the parameters that GIF may move.

    Members:
        HIGHEST_OUTPUTS: per layer, the units with the largest |mean output| over ``data``.
        HIGHEST_GRADIENTS: per layer, the units with the largest |mean ∂loss/∂output|.
        LOWEST_OUTPUTS: as HIGHEST_OUTPUTS, ranked ascending (the paper's control).
        LOWEST_GRADIENTS: as HIGHEST_GRADIENTS, ranked ascending.
        SALIENCY: per layer, the elements θ_i with the largest |mean ∂ℓ/∂θ_i| over ``data``
            (the gradient-magnitude mask of SalUn, Fan et al. 2024, with the per-layer budget
            of the other criteria): Highest-k gradients at the weight level instead of the unit
            level.
        RANDOM: uniformly random elements, ``ratio`` of each layer (needs no data).
        BY_NAMES: every element of the parameters named in ``names``.
        BY_MODULES: every element of the submodules given in ``modules``.
        ALL: every trainable element.

    Strings are accepted wherever a criterion is: ``criterion="highest_gradients"``.
    """

    HIGHEST_OUTPUTS = "highest_outputs"
    HIGHEST_GRADIENTS = "highest_gradients"
    LOWEST_OUTPUTS = "lowest_outputs"
    LOWEST_GRADIENTS = "lowest_gradients"
    SALIENCY = "saliency"
    RANDOM = "random"
    BY_NAMES = "by_names"
    BY_MODULES = "by_modules"
    ALL = "all"

    def __str__(self) -> str:
        return self.value

    @classmethod
    def parse(cls, value: Any) -> Criterion:
        """Return the member for ``value`` (a member or its string, any case)."""
        return parse_choice(cls, value, "selection criterion")

    @property
    def is_ranking(self) -> bool:
        """True for the criteria that rank units (or elements) by a statistic of the data."""
        return self in _RANKING

    @property
    def uses_gradients(self) -> bool:
        """True when the statistic is a loss gradient, ∂loss/∂output or ∂loss/∂θ (``saliency``)."""
        return self in (Criterion.HIGHEST_GRADIENTS, Criterion.LOWEST_GRADIENTS, Criterion.SALIENCY)

    @property
    def descending(self) -> bool:
        """True when the largest statistics are taken first."""
        return self in (Criterion.HIGHEST_OUTPUTS, Criterion.HIGHEST_GRADIENTS, Criterion.SALIENCY)

    @property
    def per_element(self) -> bool:
        """True when every element is its own unit, whatever the layer (``saliency``)."""
        return self is Criterion.SALIENCY

    @property
    def uses_ratio(self) -> bool:
        """True when ``ratio`` sets a per-layer budget (ranking criteria and random)."""
        return self.is_ranking or self is Criterion.RANDOM


_RANKING = frozenset(
    {
        Criterion.HIGHEST_OUTPUTS,
        Criterion.HIGHEST_GRADIENTS,
        Criterion.LOWEST_OUTPUTS,
        Criterion.LOWEST_GRADIENTS,
        Criterion.SALIENCY,
    }
)
