"""geninf — generalized influence functions for PyTorch models."""

from .edit import (
    ClassRemovalValidation,
    EditMethod,
    EditRecord,
    EditResult,
    LabelChangeValidation,
    Schedule,
    relabel,
    remove,
)
from .errors import (
    ConvergenceWarning,
    DataError,
    DeterminismError,
    EditWarning,
    GenInfError,
    InputError,
    ModelTooLargeError,
    NonFiniteError,
    NumericalError,
    ObjectiveError,
    SolverDivergenceError,
    SubsetError,
)
from .influence import (
    InfluenceMethod,
    InfluenceResult,
    influence,
    label_change_gradient,
    removal_scale,
)
from .linalg import GaussNewtonOperator, HessianOperator, HVPMethod
from .objective import Objective, SupervisedObjective
from .params import ParameterSubset
from .scoring import score, self_influence, top_k
from .selection import Criterion, SelectionSummary, select, select_with_summary
from .solvers import SolverDiagnostics, SolveResult, get_solver

__version__ = "0.1.0"

__all__ = [
    "ClassRemovalValidation",
    "EditMethod",
    "EditRecord",
    "EditResult",
    "LabelChangeValidation",
    "Schedule",
    "relabel",
    "remove",
    "ConvergenceWarning",
    "DataError",
    "GaussNewtonOperator",
    "HessianOperator",
    "HVPMethod",
    "InfluenceMethod",
    "InfluenceResult",
    "SolveResult",
    "SolverDiagnostics",
    "get_solver",
    "Criterion",
    "SelectionSummary",
    "select",
    "select_with_summary",
    "score",
    "self_influence",
    "top_k",
    "influence",
    "label_change_gradient",
    "removal_scale",
    "DeterminismError",
    "EditWarning",
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
