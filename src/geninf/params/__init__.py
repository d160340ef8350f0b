"""Parameter layouts and subsets (the J of the generalized influence function)."""

from .layout import ParameterLayout, trainable_parameters
from .subset import ParameterSubset

__all__ = ["ParameterLayout", "ParameterSubset", "trainable_parameters"]
