"""geninf — generalized influence functions for PyTorch models."""

from .errors import (
    ConvergenceWarning,
    DataError,
    DeterminismError,
    GenInfError,
    InputError,
    ModelTooLargeError,
    NonFiniteError,
    NumericalError,
    ObjectiveError,
    SolverDivergenceError,
    SubsetError,
)
from .objective import Objective, SupervisedObjective
from .params import ParameterSubset

__version__ = "0.1.0"

__all__ = [
    "ConvergenceWarning",
    "DataError",
    "DeterminismError",
    "GenInfError",
    "InputError",
    "ModelTooLargeError",
    "NonFiniteError",
    "NumericalError",
    "Objective",
    "ObjectiveError",
    "ParameterSubset",
    "SolverDivergenceError",
    "SubsetError",
    "SupervisedObjective",
    "__version__",
]
