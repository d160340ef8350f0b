"""Influence estimators: original, gif, freezing and projecting (see ``estimators``)."""

from .estimators import (
    InfluenceMethod,
    InfluenceResult,
    influence,
    label_change_gradient,
    removal_scale,
)

__all__ = [
    "InfluenceMethod",
    "InfluenceResult",
    "influence",
    "label_change_gradient",
    "removal_scale",
]
