"""Influence estimators: original, gif, freezing and projecting (see ``estimators``)."""

from .estimators import (
    InfluenceMethod,
    InfluenceResult,
    InfluenceSystem,
    influence,
    influence_system,
    label_change_gradient,
    removal_scale,
)

__all__ = [
    "InfluenceMethod",
    "InfluenceResult",
    "InfluenceSystem",
    "influence",
    "influence_system",
    "label_change_gradient",
    "removal_scale",
]
